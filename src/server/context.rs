//! What every connection task shares: settings (swapped whole on reload),
//! the hub, the telemetry handle, the shutdown token and the task tracker
//! that shutdown waits on.

use std::sync::Arc;

use arc_swap::{ArcSwap, ArcSwapOption};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::admission::ConnectionSlots;
use super::closing::CloseSchedule;
use super::guesses::WrongTokens;
use super::handover::Offered;
use super::rate::{KeyedBuckets, RateWindow};
use super::realtime::{RealtimeForum, SocketUsers};
use super::relay::Relay;
use super::secret_rotation::SecretWatch;
use super::websocket::{
    CHANNEL_CREATION_ADDRESSES, CHANNEL_CREATION_BURST, CHANNEL_CREATIONS_PER_SECOND,
};
use crate::cluster::Cluster;
use crate::config::{InForce, Resolved, Secret, Settings};
use crate::hub::{Frame, Hub, HubLimits, SentTotals, Writers};
use crate::protocol::{ChannelName, SocketId};
use crate::telemetry::Telemetry;
use crate::telemetry::feed::FeedItem;
use crate::telemetry::metrics::Snapshot;
use crate::webhooks::Webhooks;

/// Everything a connection's task needs: the settings in force, the hub,
/// the telemetry, the shutdown signal, the limits' state.
pub struct ServerContext {
    settings: ArcSwap<Settings>,
    /// What `settings` was resolved from, for `/about`.
    in_force: ArcSwap<Vec<InForce>>,
    pub hub: Hub,
    /// The tasks that write fanned-out frames to plain sockets.
    pub writers: Writers,
    /// Every observer: statistics counts, metrics, the dashboard's feed.
    pub telemetry: Telemetry,
    /// Cancelled when the server should stop; sessions then close with 4200.
    pub shutdown: CancellationToken,
    /// Every connection task, so shutdown can wait for them.
    pub tracker: TaskTracker,
    /// Set when the server itself terminates TLS.
    pub tls: Option<TlsAcceptor>,
    /// Open websocket connections, in all and per client address.
    pub slots: Arc<ConnectionSlots>,
    /// The admin token used when the settings name none; made up at startup.
    generated_admin_token: Secret,
    pub started: std::time::Instant,
    /// The Redis adapter, when several nodes serve as one.
    pub cluster: Option<Arc<Cluster>>,
    /// The webhook senders, when the settings name receivers.
    pub webhooks: Option<Arc<Webhooks>>,
    /// Signed HTTP API requests this second (one app, so one key).
    pub api_rate: std::sync::Mutex<RateWindow>,
    /// Wrong dashboard tokens per client address.
    pub wrong_tokens: WrongTokens,
    /// New channels per client address (`websocket::handler`).
    pub channel_creations: KeyedBuckets<std::net::IpAddr>,
    /// Open TCP connections per peer address, from accept until the HTTP
    /// part ends (websockets then hold a slot of `slots`); trusted proxies
    /// are not counted.
    pub tcp_slots: Arc<ConnectionSlots>,
    /// Set when serving a Flarum 2 forum (flarum/realtime): who typing
    /// users are, what they may see, the index-typing state.
    pub realtime: ArcSwapOption<RealtimeForum>,
    /// The forum user each socket proved to be.
    pub socket_users: SocketUsers,
    /// Set when the server stops to be started again (the forum wants a
    /// new listener).
    restart: std::sync::atomic::AtomicBool,
    /// When each websocket is closed at shutdown (`server::closing`).
    pub closing: CloseSchedule,
    /// The listening socket as offered to a next `serve` (`handover`).
    pub offered: Offered,
    /// Set when a new `serve` took the listening socket over: the
    /// websockets are then closed over `close_spread`.
    handed_over: std::sync::atomic::AtomicBool,
    /// Set while a handover's other process runs (`relay`): what this one
    /// publishes is passed to it too.
    pub relay: ArcSwapOption<Relay>,
    /// Where the app secret follows config.php (Flarum 2): asked to look
    /// at it now when a request's signature fails.
    pub secret_watch: std::sync::OnceLock<Arc<SecretWatch>>,
}

fn hub_limits(settings: &Settings) -> HubLimits {
    HubLimits {
        max_presence_members: settings.limits.max_presence_members,
        cache_ttl: settings.limits.cache_ttl,
        max_cached_channels: settings.limits.max_cached_channels,
    }
}

impl ServerContext {
    pub fn new(settings: Settings, shutdown: CancellationToken) -> Self {
        let with_cluster = settings.redis_url.is_some();
        let sent = Arc::new(SentTotals::default());
        let telemetry = Telemetry::new(with_cluster, sent.clone());
        Self {
            hub: Hub::new(hub_limits(&settings)),
            writers: Writers::new(sent),
            settings: ArcSwap::from_pointee(settings),
            in_force: ArcSwap::default(),
            telemetry,
            shutdown,
            tracker: TaskTracker::new(),
            tls: None,
            slots: Arc::new(ConnectionSlots::default()),
            generated_admin_token: Secret::new(random_token()),
            started: std::time::Instant::now(),
            cluster: None,
            webhooks: None,
            api_rate: std::sync::Mutex::new(RateWindow::default()),
            wrong_tokens: WrongTokens::default(),
            tcp_slots: Arc::new(ConnectionSlots::default()),
            channel_creations: KeyedBuckets::new(
                CHANNEL_CREATION_BURST,
                CHANNEL_CREATIONS_PER_SECOND,
                CHANNEL_CREATION_ADDRESSES,
            ),
            realtime: ArcSwapOption::empty(),
            socket_users: SocketUsers::default(),
            restart: std::sync::atomic::AtomicBool::new(false),
            closing: CloseSchedule::default(),
            offered: Offered::default(),
            handed_over: std::sync::atomic::AtomicBool::new(false),
            relay: ArcSwapOption::empty(),
            secret_watch: std::sync::OnceLock::new(),
        }
    }

    /// A new `serve` accepts on the socket now: stop, closing the
    /// websockets over `close_spread`.
    pub fn hand_over(&self) {
        self.handed_over
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.shutdown.cancel();
    }

    /// Whether the stop is a handover to a new process.
    pub fn handed_over(&self) -> bool {
        self.handed_over.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Marks the coming stop as a restart.
    pub fn request_restart(&self) {
        self.restart
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether the stop was a restart.
    pub fn restart_requested(&self) -> bool {
        self.restart.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Share events, presence and users with other nodes through `cluster`.
    pub fn with_cluster(mut self, cluster: Arc<Cluster>) -> Self {
        self.cluster = Some(cluster);
        self
    }

    /// Send webhooks through `webhooks`.
    pub fn with_webhooks(mut self, webhooks: Option<Arc<Webhooks>>) -> Self {
        self.webhooks = webhooks;
        self
    }

    /// Serve every connection over TLS with `acceptor`.
    pub fn with_tls(mut self, acceptor: TlsAcceptor) -> Self {
        self.tls = Some(acceptor);
        self
    }

    /// The settings in force now; a connection keeps what it read.
    pub fn settings(&self) -> Arc<Settings> {
        self.settings.load_full()
    }

    /// The token that opens /dashboard and /metrics: `admin_token` from the
    /// settings, else the one made up at startup.
    pub fn admin_token(&self) -> Secret {
        self.settings()
            .admin_token
            .clone()
            .unwrap_or_else(|| self.generated_admin_token.clone())
    }

    /// Whether the admin token is the made-up one (and must be shown once).
    pub fn admin_token_generated(&self) -> bool {
        self.settings().admin_token.is_none()
    }

    /// Publishes one event frame on `channel`: to this node's subscribers
    /// but `except`, to the other nodes when clustered, to the other
    /// process of a handover while it runs (`relay`), into the fan-out
    /// metric and the dashboard's feed (`seen`). Every publisher (the HTTP
    /// API, client events) goes through here, so none can forget a part.
    pub fn publish(
        &self,
        channel: &ChannelName,
        frame: Frame,
        except: Option<SocketId>,
        cache: bool,
        seen: FeedItem,
    ) {
        let started = std::time::Instant::now();
        self.hub.publish(channel, frame.clone(), except, cache);
        let took = started.elapsed();
        if let Some(cluster) = &self.cluster {
            cluster.broadcast_event(channel, &frame, except, cache);
        }
        if let Some(relay) = &*self.relay.load() {
            relay.event(channel, &frame, except.as_slice(), cache);
        }
        self.telemetry.published(took, seen);
    }

    /// Publishes `frame` on `channel` to every subscriber but the sockets of
    /// `except` (the first is the sender). Other nodes leave out only the
    /// sender: they do not know this node's sockets.
    pub fn publish_except(
        &self,
        channel: &ChannelName,
        frame: Frame,
        except: &[SocketId],
        seen: FeedItem,
    ) {
        let started = std::time::Instant::now();
        self.hub
            .publish_except(channel.as_str(), frame.clone(), except);
        let took = started.elapsed();
        if let Some(cluster) = &self.cluster {
            cluster.broadcast_event(channel, &frame, except.first().copied(), false);
        }
        if let Some(relay) = &*self.relay.load() {
            relay.event(channel, &frame, except, false);
        }
        self.telemetry.published(took, seen);
    }

    /// Samples the server's state into the dashboard's history.
    pub fn sample_history(&self) {
        let webhooks = self.webhooks.as_ref().map(|webhooks| webhooks.status());
        self.telemetry.sample(crate::telemetry::history::Reading {
            subscriptions: self.hub.totals().subscriptions as u64,
            webhooks_sent: webhooks.as_ref().map_or(0, |w| w.sent),
            webhooks_failed: webhooks.as_ref().map_or(0, |w| w.failed),
            webhooks_dropped: webhooks.as_ref().map_or(0, |w| w.dropped),
            cluster: self.cluster.as_ref().map(|cluster| {
                let status = cluster.status();
                (
                    status.redis_up,
                    status.other_nodes as u64 + 1,
                    status.link_drops,
                )
            }),
            ..Default::default()
        });
    }

    /// The metrics as text, with the hub's and connections' state read now.
    pub fn render_metrics(&self) -> String {
        let totals = self.hub.totals();
        self.telemetry.render(Snapshot {
            connections: self.telemetry.connections(),
            channels: totals.channels,
            subscriptions: totals.subscriptions,
            presence_members: totals.presence_members,
            cluster: self.cluster.as_ref().map(|cluster| cluster.status()),
            webhooks: self.webhooks.as_ref().map(|webhooks| webhooks.status()),
        })
    }

    /// Applies reloaded settings: credentials and limits take effect for
    /// new requests and messages at once; connections stay open.
    pub fn apply(&self, resolved: &Resolved) {
        let settings = resolved.settings.clone();
        self.hub.set_limits(hub_limits(&settings));
        if let Some(webhooks) = &self.webhooks {
            webhooks.set_credentials(&settings.app);
        }
        self.settings.store(Arc::new(settings));
        self.record_sources(resolved);
    }

    /// Remembers each setting's value and source, for `/about`.
    pub fn record_sources(&self, resolved: &Resolved) {
        self.in_force.store(Arc::new(resolved.in_force()));
    }

    /// Each setting as this process runs with it, and its source (empty
    /// until the command that started the server records them).
    pub fn in_force(&self) -> Arc<Vec<InForce>> {
        self.in_force.load_full()
    }
}

/// 128 random bits as hex.
fn random_token() -> String {
    let bytes: [u8; 16] = rand::random();
    hex::encode(bytes)
}
