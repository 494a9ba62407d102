//! The hub's shared state, and subscribing and signing in, which change it.
//! Publishing is in `delivery`, what the API and metrics read in `reports`,
//! what other nodes tell the hub in `remote`.

mod delivery;
mod remote;
mod reports;

pub use reports::{ChannelInfo, ChannelSummary, HubTotals};

use std::collections::HashMap;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use serde_json::Value;

use tokio::sync::mpsc;

use super::budget::{QueueBudget, choose_victims};
use super::link::SocketLink;
use super::mailbox::Frame;
use super::notice::{ChangeFeed, ChannelChange, Notice};
use super::presence::{Change, Members};
use super::users::Users;
use crate::protocol::messages::{PresenceMember, SigninUser, outgoing};
use crate::protocol::{ChannelKind, ChannelName, SocketId};

/// Limits the hub enforces; replaced as a whole when settings reload.
#[derive(Debug, Clone, PartialEq)]
pub struct HubLimits {
    pub max_presence_members: usize,
    pub cache_ttl: Duration,
    /// Cache channels remembered at once; the oldest event goes first.
    pub max_cached_channels: usize,
}

/// Why a subscription was refused by the hub.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubscribeError {
    #[error("presence channel {channel} already has {max} members, the configured maximum")]
    PresenceFull { channel: String, max: usize },
}

/// A subscribed socket in a channel.
#[derive(Debug)]
struct Subscriber {
    link: Arc<SocketLink>,
    /// For presence channels, the member key this socket counts for.
    member_key: Option<String>,
}

#[derive(Debug, Default)]
struct Channel {
    subscribers: HashMap<SocketId, Subscriber>,
    /// Presence members: this node's subscribers and, in a cluster, the
    /// members other nodes reported.
    members: Members,
}

impl Channel {
    /// Neither local subscribers nor members elsewhere: the entry can go.
    fn is_unused(&self) -> bool {
        self.subscribers.is_empty() && self.members.len() == 0
    }

    fn announce_removed(&self, channel: &str, user_id: &Value) {
        let frame = Frame::from(outgoing::member_removed(channel, user_id));
        let sharers = self.subscribers.len();
        for subscriber in self.subscribers.values() {
            subscriber.link.send_shared(frame.clone(), sharers);
        }
    }
}

/// The last event published on a cache channel.
#[derive(Debug, Clone)]
struct CachedEvent {
    frame: Frame,
    stored: Instant,
}

#[derive(Debug)]
pub(super) struct State {
    channels: HashMap<ChannelName, Channel>,
    cache: HashMap<ChannelName, CachedEvent>,
    users: Users,
    limits: HubLimits,
    /// Where local presence and signin changes are told, when watched.
    notices: Option<mpsc::UnboundedSender<Notice>>,
    /// Where channel counts, membership changes and cache misses are told
    /// (the webhooks), when watched.
    changes: Option<ChangeFeed>,
    /// Set while this process hands its tabs to a new one: presence
    /// memberships of closed sockets (channel, member key, when) are kept
    /// a while (`Hub::hold_leaves`).
    held_leaves: Option<Vec<(String, String, Instant)>>,
}

impl State {
    fn tell(&self, change: impl FnOnce() -> ChannelChange) {
        if let Some(feed) = &self.changes {
            feed.tell(change());
        }
    }
}

/// Cheap to clone handle on the shared hub.
#[derive(Clone, Debug)]
pub struct Hub {
    /// Lock 1 of the contract in `hub/mod.rs`.
    state: Arc<RwLock<State>>,
    /// What sockets hold queued, per address and in all.
    budget: Arc<QueueBudget>,
}

impl Hub {
    /// Records that `link` is signed in as `user` (see [`Users::sign_in`]).
    pub fn sign_in(&self, link: &Arc<SocketLink>, user: SigninUser) {
        let mut state = self.write();
        let State { users, notices, .. } = &mut *state;
        users.sign_in(link, user, notices.as_ref());
    }

    /// The user `socket` is signed in as.
    pub fn signed_in_user(&self, socket: SocketId) -> Option<String> {
        self.read().users.signed_in_user(socket)
    }

    /// Closes every socket signed in as `user_id` (4009); returns how many.
    pub fn terminate_user(&self, user_id: &str) -> usize {
        self.read().users.terminate_user(user_id)
    }
    pub fn new(limits: HubLimits) -> Self {
        Self {
            state: Arc::new(RwLock::new(State {
                channels: HashMap::new(),
                cache: HashMap::new(),
                users: Users::default(),
                limits,
                notices: None,
                changes: None,
                held_leaves: None,
            })),
            budget: Arc::new(QueueBudget::default()),
        }
    }

    /// The queued-bytes budget sockets are charged to.
    pub fn budget(&self) -> &Arc<QueueBudget> {
        &self.budget
    }

    /// Asks the sockets that hold the most queued to close (4100), until
    /// every address and the process are within their budgets; returns the
    /// addresses of those asked. Sockets already asked are not counted.
    pub fn enforce_budget(&self) -> Vec<std::net::IpAddr> {
        let links: Vec<Arc<SocketLink>> = {
            let state = self.read();
            let mut seen = std::collections::HashSet::new();
            state
                .channels
                .values()
                .flat_map(|channel| channel.subscribers.iter())
                .filter(|(id, _)| seen.insert(**id))
                .map(|(_, subscriber)| subscriber.link.clone())
                .collect()
        };
        let mut charged = Vec::new();
        let mut held = Vec::new();
        for link in links {
            if let Some(holding) = link.holding() {
                held.push(holding);
                charged.push(link);
            }
        }
        choose_victims(&self.budget, &held)
            .into_iter()
            .map(|index| {
                charged[index].request_drop(crate::protocol::close_code::OVER_CAPACITY);
                held[index].0
            })
            .collect()
    }

    pub(super) fn read(&self) -> RwLockReadGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps half-updated in
        // a way that matters more than stopping all realtime delivery would.
        self.state
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(super) fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Applies new limits (a reload); what is already held is kept.
    pub fn set_limits(&self, limits: HubLimits) {
        self.write().limits = limits;
    }

    /// Queues `subscription_succeeded` again to `link`, already subscribed
    /// to `channel` (with the member list as it is now, on a presence
    /// channel); nothing when it is not subscribed.
    pub fn answer_subscribed(&self, link: &SocketLink, channel: &ChannelName) {
        // The write lock: the member list is built once and kept.
        let mut state = self.write();
        let Some(entry) = state.channels.get_mut(channel) else {
            return;
        };
        if !entry.subscribers.contains_key(&link.id) {
            return;
        }
        let succeeded = if channel.kind() == ChannelKind::Presence {
            outgoing::subscription_succeeded_with(channel.as_str(), &entry.members.list())
        } else {
            outgoing::subscription_succeeded_with(channel.as_str(), "{}")
        };
        link.send(succeeded.into());
    }

    /// Subscribes `link` and queues `subscription_succeeded` (with the member
    /// list on presence channels) and the cache replay to it. Subscribing
    /// twice is harmless (the second time changes nothing).
    pub fn subscribe(
        &self,
        link: &Arc<SocketLink>,
        channel: &ChannelName,
        member: Option<PresenceMember>,
    ) -> Result<(), SubscribeError> {
        let mut state = self.write();
        let State {
            channels,
            cache,
            limits,
            notices: state_notices,
            changes,
            ..
        } = &mut *state;
        let tell = |change: ChannelChange| {
            if let Some(feed) = changes.as_ref() {
                feed.tell(change);
            }
        };
        let entry = channels.entry(channel.clone()).or_default();
        if entry.subscribers.contains_key(&link.id) {
            return Ok(());
        }
        let is_presence = channel.kind() == ChannelKind::Presence;

        if is_presence {
            let member = member.expect("presence subscriptions carry their member");
            if !entry.members.contains(&member.key)
                && entry.members.len() >= limits.max_presence_members
            {
                if entry.is_unused() {
                    channels.remove(channel);
                }
                return Err(SubscribeError::PresenceFull {
                    channel: channel.to_string(),
                    max: limits.max_presence_members,
                });
            }
            let key = member.key.clone();
            if let Some(notices) = &state_notices {
                let _ = notices.send(Notice::Joined {
                    channel: channel.to_string(),
                    socket: link.id,
                    member: member.clone(),
                });
            }
            let added =
                outgoing::member_added(channel.as_str(), &member.user_id, &member.user_info);
            let user_id = changes.is_some().then(|| member.user_id.clone());
            if entry.members.join(member) == Change::Membership {
                let frame = Frame::from(added);
                let sharers = entry.subscribers.len();
                for subscriber in entry.subscribers.values() {
                    subscriber.link.send_shared(frame.clone(), sharers);
                }
                if let Some(user_id) = user_id {
                    tell(ChannelChange::Member {
                        channel: channel.to_string(),
                        user_id,
                        joined: true,
                    });
                }
            }
            entry.subscribers.insert(
                link.id,
                Subscriber {
                    link: link.clone(),
                    member_key: Some(key),
                },
            );
        } else {
            entry.subscribers.insert(
                link.id,
                Subscriber {
                    link: link.clone(),
                    member_key: None,
                },
            );
        }

        tell(ChannelChange::Count {
            channel: channel.to_string(),
            count: entry.subscribers.len(),
        });
        let succeeded = if is_presence {
            outgoing::subscription_succeeded_with(channel.as_str(), &entry.members.list())
        } else {
            outgoing::subscription_succeeded_with(channel.as_str(), "{}")
        };
        link.send(succeeded.into());

        if channel.class().cached {
            match cache.get(channel) {
                Some(cached) if cached.stored.elapsed() < limits.cache_ttl => {
                    link.send(cached.frame.clone());
                }
                _ => {
                    link.send(outgoing::cache_miss(channel.as_str()).into());
                    tell(ChannelChange::CacheMiss {
                        channel: channel.to_string(),
                    });
                }
            }
        }
        Ok(())
    }

    /// Removes `socket` from `channel`; tells the others when a presence
    /// member left with their last socket. Returns whether it was subscribed.
    pub fn unsubscribe(&self, socket: SocketId, channel: &str) -> bool {
        let mut state = self.write();
        Self::remove_subscription(&mut state, socket, channel)
    }

    fn remove_subscription(state: &mut State, socket: SocketId, channel: &str) -> bool {
        let Some(entry) = state.channels.get_mut(channel) else {
            return false;
        };
        let Some(subscriber) = entry.subscribers.remove(&socket) else {
            return false;
        };
        if let Some(key) = subscriber.member_key {
            if let Some(notices) = &state.notices {
                let _ = notices.send(Notice::Left {
                    channel: channel.to_owned(),
                    socket,
                });
            }
            if let Some(held) = &mut state.held_leaves {
                held.push((channel.to_owned(), key, Instant::now()));
            } else if let Some(member) = entry.members.leave(&key) {
                entry.announce_removed(channel, &member.user_id);
                if let Some(feed) = &state.changes {
                    feed.tell(ChannelChange::Member {
                        channel: channel.to_owned(),
                        user_id: member.user_id,
                        joined: false,
                    });
                }
            }
        }
        let count = entry.subscribers.len();
        if entry.is_unused() {
            state.channels.remove(channel);
        }
        state.tell(|| ChannelChange::Count {
            channel: channel.to_owned(),
            count,
        });
        true
    }

    /// Sends this hub's presence and signin changes to the returned receiver
    /// from now on (the cluster adapter mirrors them to other nodes).
    pub fn watch_changes(&self) -> mpsc::UnboundedReceiver<Notice> {
        let (sender, receiver) = mpsc::unbounded_channel();
        self.write().notices = Some(sender);
        receiver
    }

    /// Stops sending changes to the receiver [`Hub::watch_changes`] gave,
    /// which then ends (a handover's relay whose other process is gone).
    pub fn unwatch_changes(&self) {
        self.write().notices = None;
    }

    /// Tells channel counts, presence membership changes and cache misses
    /// to `feed` from now on (the webhooks).
    pub fn watch_channels(&self, feed: ChangeFeed) {
        self.write().changes = Some(feed);
    }

    /// From now on, a presence member whose socket leaves stays listed
    /// until [`Hub::release_held_leaves`]: this process is handing its tabs
    /// to a new one, and a member whose tab moves there comes back (as a
    /// remote member) before anyone needs to hear they left.
    pub fn hold_leaves(&self) {
        self.write().held_leaves.get_or_insert_with(Vec::new);
    }

    /// Lets the leaves held since before `before` take effect: a member
    /// with no other socket here or mirrored is removed (`member_removed`).
    pub fn release_held_leaves(&self, before: Instant) {
        let mut state = self.write();
        let Some(held) = &mut state.held_leaves else {
            return;
        };
        let due: Vec<(String, String)> = held
            .extract_if(.., |(_, _, at)| *at < before)
            .map(|(channel, key, _)| (channel, key))
            .collect();
        for (channel, key) in due {
            Self::leave_member(&mut state, &channel, &key);
        }
    }

    /// Forgets a closed socket: its subscriptions (given by the session,
    /// which knows them) and its signin.
    pub fn remove_socket<'a>(&self, socket: SocketId, channels: impl IntoIterator<Item = &'a str>) {
        let mut state = self.write();
        for channel in channels {
            Self::remove_subscription(&mut state, socket, channel);
        }
        let State { users, notices, .. } = &mut *state;
        users.sign_out(socket, notices.as_ref());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::messages::parse_presence_member;

    fn hub() -> Hub {
        Hub::new(HubLimits {
            max_cached_channels: 3,
            max_presence_members: 2,
            cache_ttl: Duration::from_secs(60),
        })
    }

    fn link() -> (Arc<SocketLink>, crate::hub::Inbox) {
        let (link, rx) = SocketLink::new(SocketId::random(), 16);
        (Arc::new(link), rx)
    }

    fn drain(rx: &mut crate::hub::Inbox) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(frame) = rx.try_recv() {
            out.push(frame.to_string());
        }
        out
    }

    fn member(id: &str) -> Option<PresenceMember> {
        Some(parse_presence_member(Some(&format!(r#"{{"user_id":"{id}"}}"#)), 128, 1024).unwrap())
    }

    #[test]
    fn member_events_only_on_first_and_last_socket() {
        let hub = hub();
        let channel = ChannelName::parse("presence-room", 200).unwrap();
        let (a, mut a_rx) = link();
        let (b1, mut b1_rx) = link();
        let (b2, mut b2_rx) = link();
        hub.subscribe(&a, &channel, member("a")).unwrap();
        hub.subscribe(&b1, &channel, member("b")).unwrap();
        hub.subscribe(&b2, &channel, member("b")).unwrap();
        let a_frames = drain(&mut a_rx);
        assert_eq!(
            a_frames
                .iter()
                .filter(|f| f.contains("member_added"))
                .count(),
            1
        );
        assert!(
            drain(&mut b1_rx)
                .iter()
                .all(|f| !f.contains("member_added"))
        );
        assert!(
            drain(&mut b2_rx)
                .iter()
                .all(|f| !f.contains("member_added"))
        );

        hub.unsubscribe(b1.id, "presence-room");
        assert!(drain(&mut a_rx).is_empty());
        hub.remove_socket(b2.id, ["presence-room"]);
        assert_eq!(
            drain(&mut a_rx)
                .iter()
                .filter(|f| f.contains("member_removed"))
                .count(),
            1
        );
        assert_eq!(hub.subscriber_ids("presence-room"), vec![a.id]);
    }

    #[tokio::test]
    async fn changes_are_watched_until_unwatched() {
        let hub = hub();
        let channel = ChannelName::parse("presence-room", 200).unwrap();
        let mut notices = hub.watch_changes();
        let (a, _a_rx) = link();
        hub.subscribe(&a, &channel, member("a")).unwrap();
        assert!(matches!(notices.recv().await, Some(Notice::Joined { .. })));
        hub.unwatch_changes();
        let (b, _b_rx) = link();
        hub.subscribe(&b, &channel, member("b")).unwrap();
        assert!(notices.recv().await.is_none(), "the watcher ends");
    }

    #[test]
    fn presence_member_cap_refuses_new_users_only() {
        let hub = hub();
        let channel = ChannelName::parse("presence-room", 200).unwrap();
        let links: Vec<_> = (0..4).map(|_| link()).collect();
        hub.subscribe(&links[0].0, &channel, member("a")).unwrap();
        hub.subscribe(&links[1].0, &channel, member("b")).unwrap();
        assert!(hub.subscribe(&links[2].0, &channel, member("c")).is_err());
        hub.subscribe(&links[3].0, &channel, member("a")).unwrap();
    }

    #[test]
    fn publish_skips_excluded_socket_and_caches() {
        let hub = hub();
        let channel = ChannelName::parse("cache-news", 200).unwrap();
        let (a, mut a_rx) = link();
        let (b, mut b_rx) = link();
        hub.subscribe(&a, &channel, None).unwrap();
        hub.subscribe(&b, &channel, None).unwrap();
        assert!(drain(&mut a_rx).iter().any(|f| f.contains("cache_miss")));
        drain(&mut b_rx);
        assert_eq!(hub.publish(&channel, Frame::from("x"), Some(a.id), true), 1);
        assert!(drain(&mut a_rx).is_empty());
        assert_eq!(drain(&mut b_rx), vec!["x"]);
        let (c, mut c_rx) = link();
        hub.subscribe(&c, &channel, None).unwrap();
        assert_eq!(drain(&mut c_rx).last().unwrap(), "x");
    }

    #[test]
    fn a_full_cache_forgets_its_oldest_event_first() {
        let hub = hub(); // three cached channels at most
        let names: Vec<ChannelName> = (0..4)
            .map(|i| ChannelName::parse(&format!("cache-c{i}"), 200).unwrap())
            .collect();
        for name in &names {
            hub.publish(name, Frame::from(format!("event on {name}")), None, true);
            std::thread::sleep(Duration::from_millis(2));
        }
        let replayed = |name: &ChannelName| {
            let (socket, mut rx) = link();
            hub.subscribe(&socket, name, None).unwrap();
            drain(&mut rx).last().cloned().unwrap()
        };
        assert!(
            replayed(&names[0]).contains("cache_miss"),
            "the oldest went"
        );
        for name in &names[1..] {
            assert_eq!(replayed(name), format!("event on {name}"));
        }
    }
}
