//! Changes to this node's own presence members and signed-in users, told to
//! whoever watches (the Redis cluster adapter), so other nodes can mirror
//! them. Sent while the hub's lock is held, so they leave in the order the
//! changes happened; a hub nobody watches sends nothing.

use crate::protocol::SocketId;
use crate::protocol::messages::PresenceMember;

/// What the hub tells the cluster about its own sockets, so that the other
/// nodes mirror this node's presence members and signed-in users.
#[derive(Debug, Clone, PartialEq)]
pub enum Notice {
    /// A local socket joined a presence channel as `member`.
    Joined {
        channel: String,
        socket: SocketId,
        member: PresenceMember,
    },
    /// A local socket left a presence channel.
    Left { channel: String, socket: SocketId },
    /// A local socket signed in as `user_id`.
    SignedIn { socket: SocketId, user_id: String },
    /// A local socket's signin ended.
    SignedOut { socket: SocketId, user_id: String },
}

/// What webhooks need to know of channels: subscriber counts of this node,
/// presence membership changes (cluster-wide, as the hub mirrors members)
/// and cache misses. Told while the lock is held, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum ChannelChange {
    /// This node's subscriber count of `channel` is now `count`.
    Count { channel: String, count: usize },
    /// `user_id`'s first socket in the cluster joined presence `channel`
    /// (`joined`), or their last one left it.
    Member {
        channel: String,
        user_id: serde_json::Value,
        joined: bool,
    },
    /// A socket of this node subscribed to a cache channel holding nothing.
    CacheMiss { channel: String },
}

/// Where the hub tells [`ChannelChange`]s: a bounded queue that never
/// blocks the hub; what does not fit is counted and lost.
#[derive(Debug, Clone)]
pub struct ChangeFeed {
    sender: tokio::sync::mpsc::Sender<ChannelChange>,
    dropped: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl ChangeFeed {
    /// A feed that counts in `dropped` what it could not pass on.
    pub fn new(
        sender: tokio::sync::mpsc::Sender<ChannelChange>,
        dropped: std::sync::Arc<std::sync::atomic::AtomicU64>,
    ) -> Self {
        Self { sender, dropped }
    }

    /// Passes `change` on without waiting; a full feed counts it as dropped
    /// (webhooks then lose that change, the hub never waits for them).
    pub fn tell(&self, change: ChannelChange) {
        if self.sender.try_send(change).is_err() {
            self.dropped
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}
