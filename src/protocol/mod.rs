//! Pure Pusher protocol rules: channel kinds, signatures, messages, close codes
//! and socket ids.
//!
//! Nothing in here does I/O or knows about tokio, so every rule can be unit
//! tested and fuzzed on its own. The server and the hub call into it; it calls
//! nothing of theirs.

pub mod channel;
pub mod close_code;
pub mod messages;
pub mod signature;
pub mod socket_id;

pub use channel::{ChannelError, ChannelKind, ChannelName};
pub use socket_id::SocketId;

/// The only protocol version that exists today; pusher-js 5, 7 and 8 all send it.
pub const PROTOCOL_VERSION: u8 = 7;

/// Protocol versions a client may ask for. Pusher still accepts the older 5
/// and 6 (they differ only in features this server also offers to 7).
pub fn is_supported_protocol(version: u8) -> bool {
    (5..=7).contains(&version)
}
