//! Who is subscribed to what: channels, presence members, cached events,
//! signed-in users and their watchlists, and the fan-out of frames into each
//! socket's bounded queue.
//!
//! The hub knows no sockets, only [`SocketLink`]s. All state sits behind one
//! `RwLock`: publishing takes the read lock (many publishers fan out at
//! once), except a publish to a cache channel, which takes the write lock
//! to store the event before fanning it out; membership changes take the
//! write lock. Frames that must be
//! ordered with membership changes (subscription succeeded, member
//! added/removed, cache replay) are queued while the lock is held, so a
//! subscriber never sees an event of a channel before its
//! `subscription_succeeded`.
//!
//! # The lock contract
//!
//! Four std locks are on the delivery path. Each is held for a few
//! microseconds, none across an `.await` (Cargo.toml's `[lints]` deny
//! `await_holding_lock`), and they are only ever taken in this order:
//!
//! 0. above the hub: the cluster's `peers` and `counts` mutexes
//!    (`cluster/mod.rs`), held while what another node said is applied to
//!    the hub, so taken before lock 1 and never while holding it; the
//!    cluster outbox's `counts` mutex is a leaf (taken alone);
//! 1. the hub's state `RwLock` (`state/mod.rs`);
//! 2. a socket's mailbox `Mutex` (`mailbox.rs`): [`SocketLink::send`] takes it
//!    under the hub lock, to queue one frame, and lets go before anything
//!    else;
//! 3. the socket's wire `Mutex` (`server/websocket/wire.rs`): a writer
//!    holds the mailbox lock while it writes the queued frames through it.
//!
//! A writer's shard `Mutex` (`writer.rs`) is a leaf: `send` hands a socket
//! to its writer after dropping the mailbox lock (still under the hub
//! lock), and the writer swaps its list out before taking any mailbox.
//! The queued-bytes budget's ledger map (`budget.rs`) is a leaf too, taken
//! only when a session opens; the ledgers themselves are atomics, charged
//! under lock 2. The server's own mutexes (admission counts, rate
//! buckets, Flarum 2's socket users and index state) are leaves, never
//! taken while any lock above is held: the hub calls nothing of theirs.
//!
//! What runs under the hub lock: finding the subscribers, `send` to each
//! (queue, maybe hand to a writer, maybe wake a session), and queuing the
//! frames ordered with a membership change. Nothing there blocks on a
//! client: a full queue closes that client with 4100 instead.
//!
//! Who may write a socket: only through its wire, whose lock makes each
//! frame go out whole (a partial write keeps the rest as the wire's tail,
//! written before anything else). The writer writes a socket's queue only
//! while the session holds none of its frames (the mailbox's `taken` flag,
//! set when the session pops a frame, cleared by [`Inbox::written`]); the
//! session writes what it popped, tungstenite's pongs and close frames.
//! TLS sockets have no wire: their session writes everything.

mod budget;
mod link;
mod mailbox;
mod notice;
mod presence;
mod sent;
mod state;
mod users;
mod writer;

pub use budget::{
    AddressLedger, MAX_QUEUED_BYTES_PER_ADDRESS, MAX_QUEUED_BYTES_TOTAL, QueueBudget,
};
pub use link::SocketLink;
pub use mailbox::{DirectWire, Frame, Inbox, MAX_QUEUED_BYTES, Wake, Written};
pub use notice::{ChangeFeed, ChannelChange, Notice};
pub use sent::SentTotals;
pub use state::{ChannelInfo, ChannelSummary, Hub, HubLimits, HubTotals, SubscribeError};
pub use writer::{WriterHandle, Writers};
