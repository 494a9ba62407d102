//! What index typing remembers between signals: who is typing where, when
//! each signal was last said, where it goes, and the throttles. Only time
//! and maps, no I/O; the signals themselves are in `index_typing`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::server::rate::KeyedBuckets;

/// A discussion is still being typed in this long after the last ping.
const EXPIRY: Duration = Duration::from_millis(6000);
/// While typing lasts, the rising edge is said again this often.
const REFRESH: Duration = Duration::from_millis(3000);
/// A discussion's channels are reused this long.
const ROUTING_TTL: Duration = Duration::from_secs(30);
/// Typing activity: one event per typist and target this often at most.
const ACTIVITY_THROTTLE: Duration = Duration::from_secs(2);

/// Compose-typing signals worked on per user at most: Flarum's composer
/// refreshes its signal every few seconds, and a faster stream only costs
/// database work.
pub(crate) const COMPOSE_SIGNAL_INTERVAL: Duration = Duration::from_secs(1);
/// What is typed in: a discussion, or a new one in a tag by a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Key {
    Discussion(u64),
    Compose { user: u64, tag: u64 },
}

/// Channels and the tag ids each may see lit.
pub(super) type Routes = Vec<(String, Vec<u64>)>;

#[derive(Default)]
struct State {
    last_seen: HashMap<Key, Instant>,
    last_broadcast: HashMap<Key, Instant>,
    /// Where each key's signals go: resolved at the rising edge.
    routes: HashMap<Key, Routes>,
    /// Discussion routing, cached.
    routing: HashMap<u64, (Instant, Routes)>,
}

/// Typists and targets, and users, remembered by each throttle at most;
/// past that the oldest go (`KeyedBuckets`), which can only let a signal
/// through early.
const THROTTLED_KEYS: usize = 2000;

/// The index-typing state of one server.
pub struct IndexTyping {
    state: Mutex<State>,
    /// Typing activity: one event per typist and target per interval.
    activity: KeyedBuckets<String>,
    /// Compose-typing signals: one per user per interval.
    compose_signals: KeyedBuckets<u64>,
}

impl Default for IndexTyping {
    fn default() -> Self {
        Self {
            state: Mutex::default(),
            activity: KeyedBuckets::one_per(ACTIVITY_THROTTLE, THROTTLED_KEYS),
            compose_signals: KeyedBuckets::one_per(COMPOSE_SIGNAL_INTERVAL, THROTTLED_KEYS),
        }
    }
}

impl IndexTyping {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A discussion's routes, when looked up less than [`ROUTING_TTL`] ago.
    pub(super) fn cached_routes(&self, discussion: u64) -> Option<Routes> {
        let state = self.lock();
        let (at, routes) = state.routing.get(&discussion)?;
        (at.elapsed() < ROUTING_TTL).then(|| routes.clone())
    }

    pub(super) fn remember_routes(&self, discussion: u64, routes: Routes) {
        self.lock()
            .routing
            .insert(discussion, (Instant::now(), routes));
    }

    /// Records a ping for `key` routed to `routes`; whether to announce now.
    pub(super) fn ping(&self, key: Key, routes: Routes) -> Option<Routes> {
        let now = Instant::now();
        let mut state = self.lock();
        let active = state
            .last_seen
            .get(&key)
            .is_some_and(|at| now.duration_since(*at) < EXPIRY);
        state.last_seen.insert(key, now);
        state.routes.insert(key, routes.clone());
        let stale = state
            .last_broadcast
            .get(&key)
            .is_none_or(|at| now.duration_since(*at) >= REFRESH);
        if !active || stale {
            state.last_broadcast.insert(key, now);
            return Some(routes);
        }
        None
    }

    /// Whether `user`'s compose-typing signal is to be worked on: one per
    /// [`COMPOSE_SIGNAL_INTERVAL`] per user, whatever the tags or the
    /// connection, decided before any database work (each signal costs a
    /// visibility proof per tag and per activity subscriber).
    pub fn take_compose_signal(&self, user: u64) -> bool {
        self.compose_signals.try_take(user)
    }

    /// Whether typing activity for `key` (a typist and target) was relayed
    /// less than [`ACTIVITY_THROTTLE`] ago.
    pub(super) fn throttled(&self, key: String) -> bool {
        !self.activity.try_take(key)
    }

    /// The keys whose typing stopped, with where to say so; forgotten.
    pub(super) fn expired(&self) -> Vec<(Key, Routes)> {
        let now = Instant::now();
        let mut state = self.lock();
        let gone: Vec<Key> = state
            .last_seen
            .iter()
            .filter(|(_, at)| now.duration_since(**at) >= EXPIRY)
            .map(|(key, _)| *key)
            .collect();
        state
            .routing
            .retain(|_, (at, _)| now.duration_since(*at) < ROUTING_TTL);
        gone.into_iter()
            .map(|key| {
                state.last_seen.remove(&key);
                state.last_broadcast.remove(&key);
                (key, state.routes.remove(&key).unwrap_or_default())
            })
            .collect()
    }
}
