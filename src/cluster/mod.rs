//! Several flarum-ws nodes behaving as one server, over Redis pub/sub.
//!
//! Every node publishes on one Redis channel (`{prefix}:bus`; on a Redis
//! Cluster, its own of 16 shard channels: [`channels`]) and listens to it
//! (them all). Events triggered on any node are fanned out by every node to its own
//! subscribers (exactly once: a node ignores its own messages and delivers
//! those locally itself). Presence members and signed-in users are mirrored
//! into each node's hub, so member lists, `member_added`/`member_removed`
//! and watchlists are cluster-wide. Channel counts for the HTTP API are
//! asked of the other nodes when a request needs them; while webhooks are
//! configured, nodes also tell each other each change of their subscriber
//! count per channel ([`counts`]), so that occupancy is a cluster-wide fact
//! and the leader ([`Cluster::is_leader`]) sends each webhook once.
//!
//! Nodes say they are alive every [`HEARTBEAT`]; one silent for [`EXPIRY`]
//! while this node hears its own messages is forgotten (its members leave).
//!
//! When Redis is unreachable or paused, each node keeps serving its own
//! clients and reconnects every second at most. Nobody is forgotten
//! meanwhile (silence proves nothing while one's own link is down), so
//! presence lists do not flap. Events for other nodes wait in the node's
//! log ([`outbox`]) and are published when Redis answers; a node that
//! missed some asks for them by number ([`Message::Resend`]) and gets each
//! once ([`sequence`]). On reconnecting, a node says hello and its own
//! state, which every node answers with theirs: presence is reconciled
//! (members who came or went meanwhile, no ghosts).

pub mod bus;
mod channels;
mod check_node;
mod counts;
mod link;
mod outbox;
mod peers;
mod redis_client;
mod sequence;
mod sharded;
mod snapshot;

pub use check_node::CheckNode;
pub use redis_client::{Probed, RedisTls, describe as describe_url, probe, target as check_target};
pub use sharded::MAX_RECEIVED_BYTES;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use self::bus::{Envelope, MemberEntry, Message};
use self::counts::RemoteCounts;
use self::outbox::Outbox;
pub use self::outbox::{MAX_CONTROL_BYTES, MAX_EVENT_LOG_BYTES, MAX_STATE_BYTES, REPLAY_WINDOW};
use self::peers::Peers;
use self::sequence::Arrival;
use self::snapshot::{Assembled, Assemblies, Piece};
pub use self::snapshot::{MAX_PARTS as MAX_SNAPSHOT_PARTS, PART_BYTES as SNAPSHOT_PART_BYTES};
use crate::hub::{Frame, Hub, Notice};
use crate::protocol::{ChannelName, SocketId};

/// How often a node says it is alive.
pub const HEARTBEAT: Duration = Duration::from_secs(1);

/// A node not heard from for this long is forgotten: a node killed outright
/// has its members removed within `EXPIRY + HEARTBEAT` (6 s).
pub const EXPIRY: Duration = Duration::from_secs(5);

/// How recently a node must have heard one of its own messages for its
/// link to count as working (a few heartbeats).
const ECHO_PROVES_LINK: Duration = Duration::from_millis(2_500);

/// How long an HTTP API request waits for the other nodes' counts.
const QUERY_TIMEOUT: Duration = Duration::from_millis(500);

/// Where the cluster's Redis is and how its keys are named.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterConfig {
    pub redis_url: String,
    /// Prefix of the pub/sub channel, so several forums can share a Redis.
    pub prefix: String,
    /// TLS files for a `rediss://` Redis.
    pub tls: RedisTls,
}

/// The adapter's health, for metrics, `/ready` and the dashboard.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClusterStatus {
    pub redis_up: bool,
    /// Times the link to Redis was lost after working.
    pub link_drops: u64,
    pub other_nodes: usize,
    pub published: u64,
    pub received: u64,
    /// Events for other nodes that left the log unpublished (Redis away
    /// for longer than [`REPLAY_WINDOW`], or past [`MAX_EVENT_LOG_BYTES`]).
    pub dropped: u64,
    /// Messages from the bus this node could not read (not JSON, not a
    /// message it knows, or over [`MAX_BUS_MESSAGE_BYTES`]), ignored.
    pub ignored: u64,
    /// Events of other nodes that never arrived here, even when asked again.
    pub lost: u64,
    /// Events published again because another node missed them.
    pub replayed: u64,
    /// Bytes of events in the log (published within the window, or waiting).
    pub log_bytes: usize,
}

/// The largest message a node accepts from the bus. A node's own largest
/// is its presence snapshot (every member its clients hold, about 200 bytes
/// each): 16 MiB holds some 80 000 members. Redis itself cuts a
/// subscriber whose pending output passes 32 MB (its default
/// `client-output-buffer-limit pubsub`), so nothing larger arrives whole.
pub const MAX_BUS_MESSAGE_BYTES: usize = 16 << 20;

/// Warnings about ignored bus messages, once a minute at most.
static IGNORED_WARNINGS: crate::throttle::Throttle =
    crate::throttle::Throttle::new(std::time::Duration::from_secs(60));

type PendingQueries = HashMap<u64, mpsc::UnboundedSender<Vec<(String, usize)>>>;

/// This node's link to the others through Redis: what it publishes, what
/// it applies from them, and what it knows of each.
pub struct Cluster {
    node: String,
    hub: Hub,
    /// What waits to be published (events first; counts coalesced).
    outbox: Arc<Outbox>,
    /// Level 0 of the lock contract in `hub/mod.rs`: held while the hub's
    /// lock is taken, never taken under it.
    peers: Mutex<Peers>,
    /// Other nodes' subscriber counts, kept while webhooks watch them.
    /// Level 0 of the lock contract, as `peers`.
    counts: Mutex<RemoteCounts>,
    /// A leaf: nothing is taken under it.
    pending: Mutex<PendingQueries>,
    /// Other nodes' snapshots arriving in parts. A leaf.
    assemblies: Mutex<Assemblies>,
    next_query: AtomicU64,
    redis_up: AtomicBool,
    /// Times the link was lost after working (the dashboard marks them).
    link_drops: AtomicU64,
    published: AtomicU64,
    received: AtomicU64,
    ignored: AtomicU64,
    lost: AtomicU64,
    /// When this node last heard one of its own messages back, in
    /// milliseconds since `started`: proof that its link works.
    echo_ms: AtomicU64,
    started: Instant,
}

impl Cluster {
    /// Starts the adapter: the Redis connections (retried until `shutdown`),
    /// heartbeats, expiry and the mirroring of `hub`'s changes.
    pub fn start(config: ClusterConfig, hub: Hub, shutdown: CancellationToken) -> Arc<Self> {
        let outbox = Arc::new(Outbox::new());
        let node = hex::encode(rand::random::<[u8; 6]>());
        let cluster = Arc::new(Self {
            node,
            hub: hub.clone(),
            outbox,
            peers: Mutex::new(Peers::default()),
            counts: Mutex::new(RemoteCounts::default()),
            pending: Mutex::new(HashMap::new()),
            assemblies: Mutex::new(Assemblies::default()),
            next_query: AtomicU64::new(1),
            redis_up: AtomicBool::new(false),
            link_drops: AtomicU64::new(0),
            published: AtomicU64::new(0),
            received: AtomicU64::new(0),
            ignored: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            echo_ms: AtomicU64::new(0),
            started: Instant::now(),
        });
        let channel = if config.redis_url.contains("+cluster://") {
            format!(
                "sharded: publishing on {}, listening to all {} lanes",
                channels::lane(&config.prefix, channels::lane_of(&cluster.node)),
                channels::LANES
            )
        } else {
            channels::single(&config.prefix)
        };
        tracing::info!(
            "Cluster node {} using Redis at {} (channel {channel})",
            cluster.node,
            redis_client::describe(&config.redis_url),
        );
        let notices = hub.watch_changes();
        tokio::spawn(link::publish_loop(
            cluster.clone(),
            config.clone(),
            shutdown.clone(),
        ));
        tokio::spawn(link::subscribe_loop(
            cluster.clone(),
            config,
            shutdown.clone(),
        ));
        tokio::spawn(cluster.clone().mirror_changes(notices));
        tokio::spawn(cluster.clone().heartbeat_and_expire(shutdown));
        cluster
    }

    pub fn node_id(&self) -> &str {
        &self.node
    }

    /// Whether Redis answers, and how many other nodes were heard from.
    pub fn status(&self) -> ClusterStatus {
        let log = self.outbox.status();
        ClusterStatus {
            redis_up: self.redis_up.load(Ordering::Relaxed),
            link_drops: self.link_drops.load(Ordering::Relaxed),
            other_nodes: self.lock_peers().count(),
            published: self.published.load(Ordering::Relaxed),
            received: self.received.load(Ordering::Relaxed),
            dropped: log.dropped,
            ignored: self.ignored.load(Ordering::Relaxed),
            lost: self.lost.load(Ordering::Relaxed),
            replayed: log.replayed,
            log_bytes: log.bytes,
        }
    }

    fn millis_since_start(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Whether this node heard one of its own messages within the last
    /// [`ECHO_PROVES_LINK`]: then its link works, and another node's
    /// silence is that node's.
    fn link_works(&self) -> bool {
        let echo = self.echo_ms.load(Ordering::Relaxed);
        echo > 0
            && self.millis_since_start().saturating_sub(echo) <= ECHO_PROVES_LINK.as_millis() as u64
    }

    fn lock_peers(&self) -> std::sync::MutexGuard<'_, Peers> {
        self.peers.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_counts(&self) -> std::sync::MutexGuard<'_, RemoteCounts> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts sharing subscriber counts with the other nodes (webhooks need
    /// cluster-wide occupancy); the receiver is told each channel whose
    /// count on another node changed.
    pub fn watch_counts(&self) -> mpsc::UnboundedReceiver<String> {
        let receiver = self.lock_counts().watch();
        self.send(Message::Hello);
        self.send_snapshot();
        receiver
    }

    /// Tells the other nodes this node's subscriber count of `channel`
    /// (its latest, with the next round of publishing).
    pub fn share_count(&self, channel: &str, count: usize) {
        self.outbox.set_count(channel, count);
    }

    /// Subscribers of `channel` on the other nodes, as last told.
    pub fn remote_count(&self, channel: &str) -> usize {
        self.lock_counts().total(channel)
    }

    /// Whether this node sends the cluster's shared webhooks: the node
    /// with the smallest id among those alive. While Redis is away, each
    /// node alone is its own leader.
    pub fn is_leader(&self) -> bool {
        self.lock_peers()
            .nodes()
            .all(|other| other > self.node.as_str())
    }

    fn send(&self, message: Message) {
        match message {
            Message::Event { .. } | Message::Terminate { .. } => self
                .outbox
                .push_event(|seq| self.envelope_numbered(Some(seq), message)),
            Message::Heartbeat
            | Message::Hello
            | Message::Resend { .. }
            | Message::Query { .. }
            | Message::Counts { .. }
            | Message::Probe
            | Message::CheckEvent { .. } => {
                if let Some(text) = self.envelope(message) {
                    self.outbox.push_control(text);
                }
            }
            Message::Joined(_)
            | Message::Left { .. }
            | Message::SignedIn { .. }
            | Message::SignedOut { .. }
            | Message::Snapshot { .. }
            | Message::Count { .. } => {
                if let Some(text) = self.envelope(message) {
                    self.outbox.push_state(text);
                }
            }
        }
    }

    /// `message` from this node, as published.
    fn envelope(&self, message: Message) -> Option<String> {
        self.envelope_numbered(None, message)
    }

    fn envelope_numbered(&self, seq: Option<u64>, message: Message) -> Option<String> {
        serde_json::to_string(&Envelope {
            node: self.node.clone(),
            seq,
            replay: false,
            message,
        })
        .ok()
    }

    /// Tells the others this node's whole state again (some of what it
    /// said was not published).
    fn resync(&self) {
        self.send_snapshot();
    }

    /// Asks `node` for its events from `from` on.
    fn ask_again(&self, node: &str, from: u64) {
        self.send(Message::Resend {
            to: node.to_owned(),
            from,
        });
    }

    /// Has every other node deliver `frame` to its subscribers of `channel`.
    pub fn broadcast_event(
        &self,
        channel: &ChannelName,
        frame: &Frame,
        except: Option<SocketId>,
        cache: bool,
    ) {
        self.send(Message::Event {
            channel: channel.to_string(),
            frame: frame.as_str().to_owned(),
            except: except.map(|id| id.to_string()),
            cache,
        });
    }

    /// Has every other node close the sockets signed in as `user_id`.
    pub fn terminate_user(&self, user_id: &str) {
        self.send(Message::Terminate {
            user_id: user_id.to_owned(),
        });
    }

    /// Subscriber counts of the other nodes' channels starting with `prefix`,
    /// summed per channel. Waits for every live node, at most
    /// [`QUERY_TIMEOUT`]; a node that does not answer in time is left out.
    pub async fn remote_counts(&self, prefix: &str) -> HashMap<String, usize> {
        let expected = self.lock_peers().count();
        let mut totals = HashMap::new();
        if expected == 0 || !self.redis_up.load(Ordering::Relaxed) {
            return totals;
        }
        let id = self.next_query.fetch_add(1, Ordering::Relaxed);
        let (answers, mut replies) = mpsc::unbounded_channel();
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, answers);
        self.send(Message::Query {
            id,
            prefix: prefix.to_owned(),
        });
        let deadline = tokio::time::Instant::now() + QUERY_TIMEOUT;
        let mut answered = 0;
        while answered < expected {
            match tokio::time::timeout_at(deadline, replies.recv()).await {
                Ok(Some(channels)) => {
                    answered += 1;
                    for (name, count) in channels {
                        *totals.entry(name).or_insert(0) += count;
                    }
                }
                _ => {
                    tracing::warn!(
                        "{answered} of {expected} other node(s) answered a channel count in time; the answer may be short"
                    );
                    break;
                }
            }
        }
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
        totals
    }

    /// Publishes this node's snapshot, in parts when it is large.
    fn send_snapshot(&self) {
        let (parts, left_out) = snapshot::split(self.snapshot());
        if left_out > 0 {
            tracing::error!(
                "{left_out} presence membership(s) of this node's clients do not fit in its snapshot ({} MiB at most) and are not shared with the other nodes",
                (snapshot::MAX_PARTS as usize * snapshot::PART_BYTES) >> 20
            );
        }
        for part in parts {
            self.send(part);
        }
    }

    /// This node's own contribution to shared state.
    fn snapshot(&self) -> Piece {
        let members = self
            .hub
            .local_members()
            .into_iter()
            .map(|(channel, socket, member)| MemberEntry {
                channel,
                socket: socket.to_string(),
                user_id: member.user_id,
                key: member.key,
                user_info: member.user_info,
            })
            .collect();
        let signins = self
            .hub
            .local_signins()
            .into_iter()
            .map(|(socket, user)| (socket.to_string(), user))
            .collect();
        let counts = self.lock_counts().watched().then(|| {
            self.hub
                .channels("")
                .into_iter()
                .map(|summary| (summary.name, summary.subscription_count))
                .collect()
        });
        Piece {
            members,
            signins,
            counts,
        }
    }

    /// Called by the link once subscribed to the bus (again): everyone is
    /// given a full expiry to be heard, told this node's state, and asked
    /// for the events this node may have missed.
    fn connected(&self) {
        self.redis_up.store(true, Ordering::Relaxed);
        let missing = {
            let mut peers = self.lock_peers();
            peers.touch_all();
            peers.all_lowest_missing()
        };
        self.send(Message::Hello);
        self.send_snapshot();
        for (node, from) in missing {
            self.ask_again(&node, from);
        }
    }

    fn disconnected(&self) {
        if self.redis_up.swap(false, Ordering::Relaxed) {
            self.link_drops.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts a message from the bus that cannot be applied, and says so
    /// (once a minute at most: whoever can publish on the channel could
    /// otherwise fill the log).
    fn ignore(&self, why: &str) {
        self.ignored.fetch_add(1, Ordering::Relaxed);
        if let Some(held_back) = IGNORED_WARNINGS.ready() {
            tracing::warn!(
                "ignoring a message on the cluster's Redis channel: {why} ({held_back} more since the last such line; flarum_ws_redis_messages_ignored counts them all)"
            );
        }
    }

    /// Delivers `check --live`'s event to this node's subscribers of its
    /// check channel (another channel is not check's to send to).
    fn deliver_check_event(&self, channel: String, frame: String) {
        if !channel.starts_with(bus::CHECK_CHANNEL_PREFIX) {
            return self.ignore(&format!("a check event for {channel}, not a check channel"));
        }
        if let Ok(channel) = ChannelName::parse(&channel, usize::MAX) {
            self.hub.publish(&channel, Frame::from(frame), None, false);
        }
    }

    /// Applies one message from the bus.
    fn receive(&self, payload: &[u8]) {
        if payload.len() > MAX_BUS_MESSAGE_BYTES {
            return self.ignore(&format!(
                "{} bytes, over the {} MiB a node ever sends",
                payload.len(),
                MAX_BUS_MESSAGE_BYTES >> 20
            ));
        }
        let envelope: Envelope = match serde_json::from_slice(payload) {
            Ok(envelope) => envelope,
            Err(error) => return self.ignore(&format!("unreadable: {error}")),
        };
        match envelope.message {
            Message::Probe => return,
            Message::CheckEvent { channel, frame } => {
                return self.deliver_check_event(channel, frame);
            }
            _ => {}
        }
        if envelope.node == self.node {
            self.echo_ms
                .store(self.millis_since_start().max(1), Ordering::Relaxed);
            return;
        }
        let node = envelope.node.as_str();
        let (newcomer, arrival) = {
            let mut peers = self.lock_peers();
            let newcomer = peers.seen(node);
            let arrival = envelope
                .seq
                .map(|seq| peers.arrive(node, seq, envelope.replay, Instant::now()));
            (newcomer, arrival)
        };
        if newcomer {
            tracing::info!("Cluster node {node} joined");
        }
        match arrival {
            Some(Arrival::Duplicate) => return,
            Some(Arrival::AfterGap { missing_from }) => {
                tracing::debug!(
                    "events of node {node} from {missing_from} on did not arrive; asking again"
                );
                self.ask_again(node, missing_from);
            }
            Some(Arrival::New) | None => {}
        }
        self.received.fetch_add(1, Ordering::Relaxed);
        let hub = &self.hub;
        let tells_its_state = matches!(envelope.message, Message::Hello | Message::Snapshot { .. });
        match envelope.message {
            Message::Event {
                channel,
                frame,
                except,
                cache,
            } => {
                if let Ok(channel) = ChannelName::parse(&channel, usize::MAX) {
                    let except = except.and_then(|id| id.parse::<SocketId>().ok());
                    hub.publish(&channel, Frame::from(frame), except, cache);
                }
            }
            Message::Joined(entry) => self.lock_peers().joined(hub, node, entry),
            Message::Left { channel, socket } => {
                self.lock_peers().left(hub, node, &channel, &socket)
            }
            Message::SignedIn { socket, user_id } => {
                self.lock_peers().signed_in(hub, node, socket, user_id)
            }
            Message::SignedOut { socket, .. } => self.lock_peers().signed_out(hub, node, &socket),
            Message::Terminate { user_id } => {
                let closed = hub.terminate_user(&user_id);
                if closed > 0 {
                    tracing::info!(
                        "Terminating {closed} connection(s) of user {user_id} at node {node}'s request"
                    );
                }
            }
            Message::Heartbeat | Message::Probe | Message::CheckEvent { .. } => {}
            Message::Hello => {
                self.send_snapshot();
                // It may have published events this node missed.
                let missing = self.lock_peers().lowest_missing(node);
                if let Some(from) = missing {
                    self.ask_again(node, from);
                }
            }
            Message::Resend { to, from } => {
                if to == self.node {
                    let again = self.outbox.replay_from(from);
                    if again > 0 {
                        tracing::info!(
                            "Publishing {again} event(s) again for node {node}, which missed them"
                        );
                    }
                }
            }
            snapshot @ Message::Snapshot { .. } => self.assemble(hub, node, snapshot),
            Message::Count { channel, count } => self.lock_counts().set(node, &channel, count),
            Message::Query { id, prefix } => {
                let channels = hub
                    .channels(&prefix)
                    .into_iter()
                    .map(|summary| (summary.name, summary.subscription_count))
                    .collect();
                self.send(Message::Counts {
                    to: node.to_owned(),
                    id,
                    channels,
                });
            }
            Message::Counts { to, id, channels } => {
                if to == self.node
                    && let Some(waiting) = self
                        .pending
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .get(&id)
                {
                    let _ = waiting.send(channels);
                }
            }
        }
        // A node we did not know may hold members: ask for its state,
        // unless it is telling it already (a hello comes with a snapshot).
        if newcomer && !tells_its_state {
            self.send(Message::Hello);
        }
    }

    /// Applies `node`'s snapshot once all its parts are here.
    fn assemble(&self, hub: &Hub, node: &str, message: Message) {
        let Some((part, parts, piece)) = snapshot::unpack(message) else {
            return;
        };
        let assembled = self
            .assemblies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .add(node, part, parts, piece);
        match assembled {
            Assembled::Whole(whole) => {
                self.lock_peers()
                    .snapshot(hub, node, whole.members, whole.signins);
                if let Some(counts) = whole.counts {
                    self.lock_counts().replace(node, counts);
                }
            }
            Assembled::Waiting => {}
            Assembled::Refused => {
                self.ignore(&format!("snapshot part {part} of {parts} from node {node}"))
            }
        }
    }

    /// Forwards the hub's local presence and signin changes to the bus.
    async fn mirror_changes(self: Arc<Self>, mut notices: mpsc::UnboundedReceiver<Notice>) {
        while let Some(notice) = notices.recv().await {
            let message = match notice {
                Notice::Joined {
                    channel,
                    socket,
                    member,
                } => Message::Joined(MemberEntry {
                    channel,
                    socket: socket.to_string(),
                    user_id: member.user_id,
                    key: member.key,
                    user_info: member.user_info,
                }),
                Notice::Left { channel, socket } => Message::Left {
                    channel,
                    socket: socket.to_string(),
                },
                Notice::SignedIn { socket, user_id } => Message::SignedIn {
                    socket: socket.to_string(),
                    user_id,
                },
                Notice::SignedOut { socket, user_id } => Message::SignedOut {
                    socket: socket.to_string(),
                    user_id,
                },
            };
            self.send(message);
        }
    }

    async fn heartbeat_and_expire(self: Arc<Self>, shutdown: CancellationToken) {
        let mut ticker = tokio::time::interval(HEARTBEAT);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = ticker.tick() => {}
            }
            if self.redis_up.load(Ordering::Relaxed) {
                self.send(Message::Heartbeat);
            }
            let lost = self
                .lock_peers()
                .give_up_missing(REPLAY_WINDOW, Instant::now());
            if lost > 0 {
                self.lost.fetch_add(lost, Ordering::Relaxed);
                tracing::warn!(
                    "{lost} event(s) of other nodes never reached this node's clients (missing for {} s; flarum_ws_redis_events_lost counts them)",
                    REPLAY_WINDOW.as_secs()
                );
            }
            let link_works = self.link_works();
            let gone = self.lock_peers().expire(&self.hub, EXPIRY, link_works);
            for (node, members) in gone {
                self.lock_counts().forget(&node);
                self.assemblies
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .forget(&node);
                tracing::warn!(
                    "Cluster node {node} was silent for {} s; removed its {members} presence member socket(s)",
                    EXPIRY.as_secs()
                );
            }
        }
    }
}
