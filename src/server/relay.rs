//! The events of a handover's window. Once a new `serve` has taken the
//! listening socket over (`handover`), the forum's triggers reach the new
//! process only, while the old one still closes its websockets over
//! `close_spread`: without a relay, a tab not yet closed would miss every
//! event of those seconds (a spread of 5 s lost more than closing at once).
//! So the two processes pass each other what they publish over the
//! handover's local socket until the old one exits: the new process's
//! events reach the old one's remaining tabs, and the old one's client
//! events (and API calls still in flight on it) reach the new one's.
//!
//! Presence goes across too, so that a member whose tab moves is not
//! announced gone and back: each process mirrors the other's members (as a
//! cluster node mirrors another's), the old one keeps a member whose socket
//! it closed listed for [`MOVE_GRACE`] (`Hub::hold_leaves`), and the new
//! one applies the old one's leaves [`MOVE_GRACE`] late. By then a moving
//! tab has joined the new process, so neither side's lists change. A
//! member who really left is removed that much later.
//!
//! Not used on a Redis cluster: both processes are nodes of it and hear
//! each other there.
//!
//! Bounded: at most [`MAX_RELAY_BYTES`] wait to be written to the other
//! process; an event past that is not relayed (the other side's tabs miss
//! it), counted and warned about. A message over [`MAX_RELAY_MESSAGE_BYTES`]
//! read from the other side ends the relay.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use super::ServerContext;
use crate::hub::{Frame, Notice};
use crate::protocol::messages::PresenceMember;
use crate::protocol::{ChannelName, SocketId};
use crate::throttle::Throttle;

/// Bytes of relayed messages that may wait to be written to the other
/// process (a row of SECURITY.md's limits table).
pub const MAX_RELAY_BYTES: usize = 16 * 1024 * 1024;

/// The largest message read from the other process.
pub const MAX_RELAY_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// How long a member whose socket the old process closed stays listed,
/// on both sides: time for the tab to reconnect to the new process and
/// join again (pusher-js reconnects at once on 4200, then asks the forum
/// to authorize the channel).
pub const MOVE_GRACE: Duration = Duration::from_secs(5);

/// Events not relayed for want of room, warned about once a second at most.
static NOT_RELAYED: Throttle = Throttle::new(Duration::from_secs(1));

/// What one process tells the other.
#[derive(Debug, Serialize, Deserialize)]
enum Relayed {
    /// Deliver `frame` to the subscribers of `channel` but `except`.
    Event {
        channel: String,
        frame: String,
        except: Vec<String>,
        cache: bool,
    },
    /// Close the sockets signed in as `user_id` (the API's
    /// terminate_connections).
    Terminate { user_id: String },
    /// A socket of the sender's joined presence `channel` as this member.
    Joined {
        channel: String,
        socket: String,
        user_id: serde_json::Value,
        key: String,
        user_info: serde_json::Value,
    },
    /// A socket of the sender's left presence `channel`.
    Left { channel: String, socket: String },
}

/// Which process of the handover this one is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Side {
    /// The one stepping aside: it closes its tabs.
    Old,
    /// The one that took the socket over.
    New,
}

impl Side {
    /// The other process, as the log names it.
    fn other(self) -> &'static str {
        match self {
            Side::Old => "new",
            Side::New => "previous",
        }
    }
}

/// This process's side of a relay: what it publishes goes to the other.
pub struct Relay {
    outgoing: mpsc::UnboundedSender<Vec<u8>>,
    /// Bytes in `outgoing` not yet written.
    queued: Arc<AtomicUsize>,
    sent: AtomicU64,
    not_sent: AtomicU64,
}

impl Relay {
    /// Has the other process deliver `frame` to its subscribers of
    /// `channel` but the sockets of `except`.
    pub fn event(&self, channel: &ChannelName, frame: &Frame, except: &[SocketId], cache: bool) {
        self.send(&Relayed::Event {
            channel: channel.to_string(),
            frame: frame.as_str().to_owned(),
            except: except.iter().map(ToString::to_string).collect(),
            cache,
        });
    }

    fn notice(&self, notice: Notice) {
        match notice {
            Notice::Joined {
                channel,
                socket,
                member,
            } => self.joined(channel, socket, member),
            Notice::Left { channel, socket } => self.send(&Relayed::Left {
                channel,
                socket: socket.to_string(),
            }),
            Notice::SignedIn { .. } | Notice::SignedOut { .. } => {}
        }
    }

    fn joined(&self, channel: String, socket: SocketId, member: PresenceMember) {
        self.send(&Relayed::Joined {
            channel,
            socket: socket.to_string(),
            user_id: member.user_id,
            key: member.key,
            user_info: member.user_info,
        });
    }

    /// Has the other process close the sockets signed in as `user_id`.
    pub fn terminate_user(&self, user_id: &str) {
        self.send(&Relayed::Terminate {
            user_id: user_id.to_owned(),
        });
    }

    fn send(&self, message: &Relayed) {
        let Ok(body) = serde_json::to_vec(message) else {
            return;
        };
        let size = body.len() + 4;
        let fits = self
            .queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |queued| {
                (queued + size <= MAX_RELAY_BYTES).then_some(queued + size)
            })
            .is_ok();
        let mut framed = Vec::with_capacity(size);
        framed.extend_from_slice(&u32::try_from(body.len()).unwrap_or(u32::MAX).to_be_bytes());
        framed.extend_from_slice(&body);
        if fits && self.outgoing.send(framed).is_ok() {
            self.sent.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if fits {
            self.queued.fetch_sub(size, Ordering::AcqRel);
        }
        let missed = self.not_sent.fetch_add(1, Ordering::Relaxed) + 1;
        if NOT_RELAYED.ready().is_some() {
            tracing::warn!(
                "An event or presence change was not passed to the other flarum-ws of the handover ({} MiB already wait, or it has gone): its tabs miss it ({missed} so far)",
                MAX_RELAY_BYTES / (1024 * 1024)
            );
        }
    }
}

/// Starts relaying over `stream` (the handover's local socket) in both
/// directions, and installs the relay in `ctx` so that what it publishes
/// is passed on. Ends, and uninstalls itself, when the other process
/// closes the socket (it exits). Must be called within the runtime.
pub fn start(stream: std::os::unix::net::UnixStream, ctx: Arc<ServerContext>, side: Side) {
    if ctx.cluster.is_some() {
        return;
    }
    let other = side.other();
    let stream = match stream
        .set_nonblocking(true)
        .and_then(|()| tokio::net::UnixStream::from_std(stream))
    {
        Ok(stream) => stream,
        Err(error) => {
            tracing::warn!("cannot relay events to the {other} flarum-ws: {error}");
            return;
        }
    };
    let (reader, mut writer) = stream.into_split();
    let (outgoing, mut pending) = mpsc::unbounded_channel::<Vec<u8>>();
    let queued = Arc::new(AtomicUsize::new(0));
    let relay = Arc::new(Relay {
        outgoing,
        queued: queued.clone(),
        sent: AtomicU64::new(0),
        not_sent: AtomicU64::new(0),
    });
    ctx.relay.store(Some(relay.clone()));
    // Presence: what this process has now, then each change (a member
    // told twice, by both, is counted once by the other side).
    let mut notices = ctx.hub.watch_changes();
    for (channel, socket, member) in ctx.hub.local_members() {
        relay.joined(channel, socket, member);
    }
    tokio::spawn({
        let relay = relay.clone();
        async move {
            while let Some(notice) = notices.recv().await {
                relay.notice(notice);
            }
        }
    });
    if side == Side::Old {
        ctx.hub.hold_leaves();
        let hub = ctx.hub.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            loop {
                tick.tick().await;
                if let Some(before) = Instant::now().checked_sub(MOVE_GRACE) {
                    hub.release_held_leaves(before);
                }
            }
        });
    }
    tokio::spawn(async move {
        while let Some(framed) = pending.recv().await {
            let size = framed.len();
            let written = writer.write_all(&framed).await;
            queued.fetch_sub(size, Ordering::AcqRel);
            if written.is_err() {
                break;
            }
        }
    });
    tokio::spawn(async move {
        let mut mirrored = Mirrored::default();
        let received = apply_incoming(reader, &ctx, side, &mut mirrored).await;
        ctx.relay.store(None);
        ctx.hub.unwatch_changes();
        // The other process has gone: its members leave (after the grace
        // when it was the old one, whose last tabs are moving here).
        for ((channel, _), key) in mirrored.0 {
            leave(&ctx, side, channel, key);
        }
        tracing::info!(
            "The {other} flarum-ws of the handover has gone: passed it {} event(s) and presence change(s), {} not (no room), and applied {received} from it",
            relay.sent.load(Ordering::Relaxed),
            relay.not_sent.load(Ordering::Relaxed)
        );
    });
}

/// Applies what the other process relays, to this process's own clients
/// only, until it closes the socket; how many messages it applied.
async fn apply_incoming(
    mut reader: tokio::net::unix::OwnedReadHalf,
    ctx: &Arc<ServerContext>,
    side: Side,
    mirrored: &mut Mirrored,
) -> u64 {
    let mut applied = 0;
    loop {
        let Ok(length) = reader.read_u32().await else {
            return applied;
        };
        let length = usize::try_from(length).unwrap_or(usize::MAX);
        if length > MAX_RELAY_MESSAGE_BYTES {
            tracing::warn!(
                "The other flarum-ws of the handover sent a message of {length} bytes, over {MAX_RELAY_MESSAGE_BYTES}: relaying ends"
            );
            return applied;
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).await.is_err() {
            return applied;
        }
        match serde_json::from_slice::<Relayed>(&body) {
            Ok(message) => {
                apply(ctx, side, mirrored, message);
                applied += 1;
            }
            Err(error) => {
                tracing::warn!("Ignored an unreadable message from the other flarum-ws: {error}");
            }
        }
    }
}

/// The other process's presence memberships mirrored here: (channel,
/// socket) to member key.
#[derive(Default)]
struct Mirrored(HashMap<(String, String), String>);

/// A mirrored member's socket left `channel`: at once when the other
/// process is the new one, after [`MOVE_GRACE`] when it is the old one
/// (the tab is moving here, and joins again before then).
fn leave(ctx: &Arc<ServerContext>, side: Side, channel: String, key: String) {
    match side {
        Side::Old => ctx.hub.remote_leave(&channel, &key),
        Side::New => {
            let hub = ctx.hub.clone();
            tokio::spawn(async move {
                tokio::time::sleep(MOVE_GRACE).await;
                hub.remote_leave(&channel, &key);
            });
        }
    }
}

fn apply(ctx: &Arc<ServerContext>, side: Side, mirrored: &mut Mirrored, message: Relayed) {
    match message {
        Relayed::Event {
            channel,
            frame,
            except,
            cache,
        } => {
            let Ok(channel) = ChannelName::parse(&channel, usize::MAX) else {
                return;
            };
            let except: Vec<SocketId> = except.iter().filter_map(|id| id.parse().ok()).collect();
            let frame = Frame::from(frame);
            if let [one] = except[..] {
                ctx.hub.publish(&channel, frame, Some(one), cache);
            } else if except.is_empty() {
                ctx.hub.publish(&channel, frame, None, cache);
            } else {
                ctx.hub.publish_except(channel.as_str(), frame, &except);
            }
        }
        Relayed::Terminate { user_id } => {
            ctx.hub.terminate_user(&user_id);
        }
        Relayed::Joined {
            channel,
            socket,
            user_id,
            key,
            user_info,
        } => {
            let Ok(name) = ChannelName::parse(&channel, usize::MAX) else {
                return;
            };
            if mirrored.0.contains_key(&(channel.clone(), socket.clone())) {
                return;
            }
            mirrored.0.insert((channel, socket), key.clone());
            ctx.hub.remote_join(
                &name,
                PresenceMember {
                    user_id,
                    key,
                    user_info,
                },
            );
        }
        Relayed::Left { channel, socket } => {
            if let Some(key) = mirrored.0.remove(&(channel.clone(), socket)) {
                leave(ctx, side, channel, key);
            }
        }
    }
}
