//! Who is subscribed to what: channels, presence members, cached events,
//! signed-in users and their watchlists, and the fan-out of frames into each
//! socket's bounded queue.
//!
//! The hub knows no sockets, only [`SocketLink`]s. All state sits behind one
//! `RwLock` that is never held across an `.await`: publishing takes the read
//! lock (many publishers fan out at once), membership changes take the write
//! lock. Frames that must be ordered with membership changes (subscription
//! succeeded, member added/removed, cache replay) are queued while the lock is
//! held, so a subscriber never sees an event of a channel before its
//! `subscription_succeeded`.

mod link;
mod notice;
mod presence;
mod state;
mod users;
mod writer;

pub use link::{DirectWire, Frame, Inbox, SocketLink, Wake, Written};
pub use notice::{ChangeFeed, ChannelChange, Notice};
pub use state::{ChannelInfo, ChannelSummary, Hub, HubLimits, HubTotals, SubscribeError};
pub use writer::{WriterHandle, Writers};
