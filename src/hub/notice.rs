//! Changes to this node's own presence members and signed-in users, told to
//! whoever watches (the Redis cluster adapter), so other nodes can mirror
//! them. Sent while the hub's lock is held, so they leave in the order the
//! changes happened; a hub nobody watches sends nothing.

use crate::protocol::SocketId;
use crate::protocol::messages::PresenceMember;

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
