//! What serving a Flarum 2 forum (flarum/realtime) adds to a plain Pusher
//! server, in one place: who each socket is (its `private-user={id}`
//! subscription), who typing users are (the users table), what they may see
//! (proven from the database), the typing indicators (`typing`) and index
//! typing (`index_typing`, its state in `index_state`). The Pusher handler
//! reaches all of it through one hook, [`RealtimeSocket`]. [`RealtimeForum`]
//! is present only for such a forum, and swapped whole when a reload finds
//! the forum changed.

mod index_state;
pub mod index_typing;
mod socket;
mod typing;

pub(crate) use index_state::COMPOSE_SIGNAL_INTERVAL;
pub use socket::{RealtimeSocket, Screened};

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::forum::{Identities, Visibility};
use crate::protocol::SocketId;

/// The forum-side services of flarum/realtime's extras.
pub struct RealtimeForum {
    pub identities: Identities,
    pub visibility: Visibility,
    /// `flarum-realtime.index-typing-indicator-restricted`: index typing of
    /// discussions guests cannot see goes to their restricted tag's channel.
    pub index_restricted: bool,
    pub index: index_state::IndexTyping,
    /// Typing work in flight (relays and compose signals, each a task that
    /// may query the forum database): bounded, so a flood waits for no one
    /// and queues nothing; signals beyond it are dropped.
    pub typing_work: Arc<tokio::sync::Semaphore>,
}

/// Typing tasks in flight at most.
pub(crate) const TYPING_WORK: usize = 64;

impl RealtimeForum {
    pub fn new(
        identities: Identities,
        visibility: Visibility,
        index_restricted: bool,
    ) -> Arc<Self> {
        Arc::new(Self {
            identities,
            visibility,
            index_restricted,
            index: Default::default(),
            typing_work: Arc::new(tokio::sync::Semaphore::new(TYPING_WORK)),
        })
    }
}

/// Which forum user each socket proved to be (flarum/realtime's identity
/// rule), for deliveries that depend on who receives them.
#[derive(Default)]
pub struct SocketUsers(Mutex<HashMap<SocketId, u64>>);

impl SocketUsers {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SocketId, u64>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Remembers which forum user `socket` signed in as (`None`: a guest).
    pub fn set(&self, socket: SocketId, user: Option<u64>) {
        match user {
            Some(user) => self.lock().insert(socket, user),
            None => self.lock().remove(&socket),
        };
    }

    /// The forum user `socket` signed in as, if any.
    pub fn get(&self, socket: SocketId) -> Option<u64> {
        self.lock().get(&socket).copied()
    }
}
