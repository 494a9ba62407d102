//! Prometheus metrics, in the OpenMetrics text format on `/metrics`.
//!
//! Counters on the hot path are single relaxed atomic adds (the websocket
//! writer adds once per batch, not per frame); gauges that describe state
//! (connections, channels, subscriptions, memory) are read when scraped, so
//! nothing has to keep them in step.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{EncodeMetric, MetricEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::{Registry, Unit};

use crate::cluster::ClusterStatus;
use crate::hub::SentTotals;
use crate::webhooks::WebhookStatus;

/// Content type of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

type CodeLabel = [(&'static str, String); 1];
type RequestLabels = [(&'static str, String); 2];
type ReasonLabel = [(&'static str, &'static str); 1];

/// What the server and the hub looked like at scrape time.
#[derive(Debug, Clone, Copy, Default)]
pub struct Snapshot {
    pub connections: u64,
    pub channels: usize,
    pub subscriptions: usize,
    pub presence_members: usize,
    /// The Redis adapter's state, when running as a cluster.
    pub cluster: Option<ClusterStatus>,
    /// The webhook senders' totals, when webhooks are configured.
    pub webhooks: Option<WebhookStatus>,
}

/// Message totals since startup.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Traffic {
    pub connections_opened: u64,
    pub messages_received: u64,
    pub messages_sent: u64,
    pub bytes_sent: u64,
    pub api_events: u64,
}

/// The reasons of `flarum_ws_refusals_total`, as its help names them.
pub const REFUSAL_REASONS: [&str; 8] = [
    "server_full",
    "address_share",
    "tcp_address_share",
    "subscriptions",
    "channel_churn",
    "client_events",
    "queued_bytes",
    "frames_throttled",
];

/// What kind of metric a row describes, as OpenMetrics names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
    Info,
}

impl Kind {
    /// The word in a `# TYPE` line.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Gauge => "gauge",
            Self::Histogram => "histogram",
            Self::Info => "info",
        }
    }
}

/// The kind of each metric type this module registers.
trait KindOf {
    const KIND: Kind;
}

impl KindOf for Counter {
    const KIND: Kind = Kind::Counter;
}
impl KindOf for Gauge {
    const KIND: Kind = Kind::Gauge;
}
impl<L, M: KindOf> KindOf for Family<L, M> {
    const KIND: Kind = M::KIND;
}
impl KindOf for Histogram {
    const KIND: Kind = Kind::Histogram;
}
impl KindOf for BuildInfo {
    const KIND: Kind = Kind::Info;
}

/// The running version, as an info metric that can be cloned like the
/// others (prometheus-client's `Info` cannot).
#[derive(Debug, Clone, Copy, Default)]
struct BuildInfo;

impl TypedMetric for BuildInfo {
    const TYPE: MetricType = MetricType::Info;
}

impl EncodeMetric for BuildInfo {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_info(&[("version", env!("CARGO_PKG_VERSION"))])
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// One metric as the server exports it: the source of its registration
/// and of the table in docs/operations.md (tests/suite/docs.rs).
#[derive(Debug, Clone, Copy)]
pub struct MetricRow {
    /// The family name, as in `# TYPE` (a counter's samples add `_total`).
    pub name: &'static str,
    pub kind: Kind,
    pub labels: &'static [&'static str],
    pub help: &'static str,
    /// Exported only by a node of a cluster (the Redis adapter's).
    pub cluster_only: bool,
}

impl MetricRow {
    /// The name a query uses for its samples (a histogram's are this with
    /// `_bucket`, `_sum` and `_count`).
    pub fn sample_name(&self) -> String {
        match self.kind {
            Kind::Counter => format!("{}_total", self.name),
            Kind::Info => format!("{}_info", self.name),
            Kind::Histogram | Kind::Gauge => self.name.to_owned(),
        }
    }
}

/// Describes every metric once: its field, its type and first value, its
/// family name (with the unit suffix prometheus-client adds), labels, help
/// and whether only a cluster node exports it. From these rows come the
/// `Registered` fields, their registration and [`ROWS`].
macro_rules! metrics {
    ($(
        $field:ident: $ty:ty = $init:expr =>
            $name:literal $([$unit:ident])? $({$($label:literal),*})? $(if $cluster:ident)?,
            $help:literal;
    )*) => {
        /// Every metric this server exports, in the order of `/metrics`.
        pub const ROWS: &[MetricRow] = &[$(MetricRow {
            name: metrics!(@family $name $($unit)?),
            kind: <$ty as KindOf>::KIND,
            labels: &[$($($label),*)?],
            help: $help,
            cluster_only: metrics!(@cluster $($cluster)?),
        }),*];

        /// The registered metrics, one field per row.
        struct Registered {
            $($field: $ty,)*
        }

        impl Registered {
            /// Every row's metric, registered in `registry` (the cluster's
            /// only with `with_cluster`).
            fn new(registry: &mut Registry, with_cluster: bool) -> Self {
                let metrics = Self { $($field: $init,)* };
                $(
                    if with_cluster || !metrics!(@cluster $($cluster)?) {
                        metrics!(@register registry, $name, $help, metrics.$field.clone() $(, $unit)?);
                    }
                )*
                metrics
            }
        }
    };
    (@family $name:literal) => { $name };
    (@family $name:literal Bytes) => { concat!($name, "_bytes") };
    (@family $name:literal Seconds) => { concat!($name, "_seconds") };
    (@cluster) => { false };
    (@cluster cluster) => { true };
    (@register $registry:ident, $name:literal, $help:literal, $metric:expr) => {
        $registry.register($name, $help, $metric)
    };
    (@register $registry:ident, $name:literal, $help:literal, $metric:expr, $unit:ident) => {
        $registry.register_with_unit($name, $help, Unit::$unit, $metric)
    };
}

metrics! {
    build: BuildInfo = BuildInfo => "flarum_ws_build" {"version"},
        "Version of the running flarum-ws";
    connections: Gauge = Gauge::default() => "flarum_ws_connections",
        "Open websocket connections";
    connections_opened: Counter = Counter::default() => "flarum_ws_connections_opened",
        "Websocket connections accepted";
    connections_closed: Family<CodeLabel, Counter> = Family::default()
        => "flarum_ws_connections_closed" {"code"},
        "Websocket connections closed, by close code (the client's, or the server's: 4100 slow consumer, 4200 shutdown, 4201 pong timeout, 4009 terminated; 1006 vanished)";
    connections_refused: Family<CodeLabel, Counter> = Family::default()
        => "flarum_ws_connections_refused" {"code"},
        "Websocket connections refused before the session started, by close code (4001 app, 4004/4100 limits, 4007 protocol, 4009 origin)";
    refusals: Family<ReasonLabel, Counter> = Family::default()
        => "flarum_ws_refusals" {"reason"},
        "What the server refused or cut, by reason: server_full and address_share (websockets past max_connections, or past the high-water mark from the address holding the most), tcp_address_share (the same for plain connections), subscriptions (429: a connection's subscription rate), channel_churn (429: new channels from one address), client_events (4301), queued_bytes (4100: dropped by the queued-bytes budget), frames_throttled (a connection's reading paused for its frame or byte rate)";
    channels: Gauge = Gauge::default() => "flarum_ws_channels",
        "Channels with at least one subscriber";
    subscriptions: Gauge = Gauge::default() => "flarum_ws_subscriptions",
        "Channel subscriptions of all connections";
    presence_members: Gauge = Gauge::default() => "flarum_ws_presence_members",
        "Members of presence channels (users, summed over channels)";
    messages_received: Counter = Counter::default() => "flarum_ws_messages_received",
        "Websocket messages received from clients";
    messages_sent: Counter = Counter::default() => "flarum_ws_messages_sent",
        "Websocket messages sent to clients";
    bytes_received: Counter = Counter::default() => "flarum_ws_received" [Bytes],
        "Payload bytes of websocket messages received";
    bytes_sent: Counter = Counter::default() => "flarum_ws_sent" [Bytes],
        "Payload bytes of websocket messages sent";
    api_requests: Family<RequestLabels, Counter> = Family::default()
        => "flarum_ws_http_api_requests" {"endpoint", "status"},
        "HTTP API requests, by endpoint and status";
    api_events: Counter = Counter::default() => "flarum_ws_http_api_events",
        "Events published through the HTTP API";
    // 10 µs to about 0.7 s.
    fanout_seconds: Histogram = Histogram::new(exponential_buckets(0.000_01, 4.0, 9))
        => "flarum_ws_fanout_duration" [Seconds],
        "Time to queue one event to every local subscriber of a channel";
    slow_consumers: Counter = Counter::default() => "flarum_ws_slow_consumer_disconnects",
        "Connections closed with 4100 because their queue filled";
    webhooks_sent: Counter = Counter::default() => "flarum_ws_webhooks_sent",
        "Webhook events a receiver acknowledged with 2xx";
    webhooks_failed: Counter = Counter::default() => "flarum_ws_webhooks_failed",
        "Webhook requests that failed or were answered other than 2xx (each is retried)";
    webhooks_dropped: Counter = Counter::default() => "flarum_ws_webhooks_dropped",
        "Webhook events given up on: retried for 5 minutes, or their queue was full";
    redis_up: Gauge = Gauge::default() => "flarum_ws_redis_up" if cluster,
        "1 while the Redis adapter is subscribed to the cluster's channel, 0 while Redis is away";
    cluster_nodes: Gauge = Gauge::default() => "flarum_ws_cluster_nodes" if cluster,
        "Nodes in the cluster, this one included";
    bus_published: Counter = Counter::default() => "flarum_ws_redis_messages_published" if cluster,
        "Messages this node published to the cluster";
    bus_received: Counter = Counter::default() => "flarum_ws_redis_messages_received" if cluster,
        "Messages from other nodes applied by this node";
    bus_dropped: Counter = Counter::default() => "flarum_ws_redis_messages_dropped" if cluster,
        "Events for other nodes never published: Redis was away for longer than they are held (60 s), or they were pushed out of the 32 MiB log";
    bus_lost: Counter = Counter::default() => "flarum_ws_redis_events_lost" if cluster,
        "Events of other nodes that never reached this node, even when asked for again";
    bus_replayed: Counter = Counter::default() => "flarum_ws_redis_events_replayed" if cluster,
        "Events this node published again because another node missed them";
    bus_log_bytes: Gauge = Gauge::default() => "flarum_ws_redis_event_log" [Bytes] if cluster,
        "Bytes of this node's events held for the other nodes (waiting while Redis is away, or published within the last 60 s)";
    bus_ignored: Counter = Counter::default() => "flarum_ws_redis_messages_ignored" if cluster,
        "Messages on the cluster's channel this node could not read (not a node's message, or too large), ignored";
    resident_memory: Gauge = Gauge::default() => "process_resident_memory" [Bytes],
        "Resident memory of the process";
    open_fds: Gauge = Gauge::default() => "process_open_fds",
        "Open file descriptors of the process";
}

/// The Prometheus metrics of one process (`/metrics`).
pub struct Metrics {
    registry: Registry,
    m: Registered,
    /// The hub's totals, which the two sent counters are brought up to.
    sent: Arc<SentTotals>,
}

impl Metrics {
    /// The metrics of one node; `with_cluster` adds the Redis adapter's.
    /// `sent` is read for the sent-message counters.
    pub fn new(with_cluster: bool, sent: Arc<SentTotals>) -> Self {
        let mut registry = Registry::default();
        let m = Registered::new(&mut registry, with_cluster);
        Self { registry, m, sent }
    }

    pub fn connection_opened(&self) {
        self.m.connections_opened.inc();
    }

    /// A session ended with `code` (the client's close code, or the server's).
    pub fn connection_closed(&self, code: u16) {
        self.m
            .connections_closed
            .get_or_create(&[("code", close_code_label(code))])
            .inc();
        if code == crate::protocol::close_code::OVER_CAPACITY {
            self.m.slow_consumers.inc();
        }
    }

    /// A websocket was refused with `code` before its session started.
    pub fn connection_refused(&self, code: u16) {
        self.m
            .connections_refused
            .get_or_create(&[("code", close_code_label(code))])
            .inc();
    }

    /// Something was refused or cut for `reason`, one of the fixed reasons
    /// named in the metric's help (the code's own words, never a client's).
    pub fn refused(&self, reason: &'static str) {
        self.m.refusals.get_or_create(&[("reason", reason)]).inc();
    }

    pub fn message_received(&self, bytes: usize) {
        self.m.messages_received.inc();
        self.m.bytes_received.inc_by(bytes as u64);
    }

    /// Counts an HTTP API request by endpoint and answer.
    pub fn api_request(&self, endpoint: &'static str, status: u16) {
        self.m
            .api_requests
            .get_or_create(&[
                ("endpoint", endpoint.to_owned()),
                ("status", status.to_string()),
            ])
            .inc();
    }

    pub fn api_events(&self, events: u64) {
        self.m.api_events.inc_by(events);
    }

    /// Records how long one event took to fan out to local subscribers.
    pub fn fanout(&self, took: Duration) {
        self.m.fanout_seconds.observe(took.as_secs_f64());
    }

    /// Totals since startup, for the dashboard.
    pub fn traffic(&self) -> Traffic {
        Traffic {
            connections_opened: self.m.connections_opened.get(),
            messages_received: self.m.messages_received.get(),
            messages_sent: self.sent.messages(),
            bytes_sent: self.sent.bytes(),
            api_events: self.m.api_events.get(),
        }
    }

    /// The metrics as OpenMetrics text, with state read from `snapshot`.
    pub fn render(&self, snapshot: Snapshot) -> String {
        self.m.connections.set(snapshot.connections as i64);
        self.m.channels.set(snapshot.channels as i64);
        self.m.subscriptions.set(snapshot.subscriptions as i64);
        self.m
            .presence_members
            .set(snapshot.presence_members as i64);
        for (counter, total) in [
            (&self.m.messages_sent, self.sent.messages()),
            (&self.m.bytes_sent, self.sent.bytes()),
        ] {
            counter.inc_by(total.saturating_sub(counter.get()));
        }
        if let Some(cluster) = snapshot.cluster {
            self.m.redis_up.set(i64::from(cluster.redis_up));
            self.m.cluster_nodes.set(cluster.other_nodes as i64 + 1);
            self.m.bus_log_bytes.set(cluster.log_bytes as i64);
            // The adapter keeps the totals; bring the counters up to them.
            for (counter, total) in [
                (&self.m.bus_published, cluster.published),
                (&self.m.bus_received, cluster.received),
                (&self.m.bus_dropped, cluster.dropped),
                (&self.m.bus_ignored, cluster.ignored),
                (&self.m.bus_lost, cluster.lost),
                (&self.m.bus_replayed, cluster.replayed),
            ] {
                counter.inc_by(total.saturating_sub(counter.get()));
            }
        }
        if let Some(webhooks) = snapshot.webhooks {
            for (counter, total) in [
                (&self.m.webhooks_sent, webhooks.sent),
                (&self.m.webhooks_failed, webhooks.failed),
                (&self.m.webhooks_dropped, webhooks.dropped),
            ] {
                counter.inc_by(total.saturating_sub(counter.get()));
            }
        }
        if let Some(rss) = resident_memory_bytes() {
            self.m.resident_memory.set(rss as i64);
        }
        if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
            self.m.open_fds.set(fds.count() as i64);
        }
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }
}

/// VmRSS from /proc/self/status, in bytes.
fn resident_memory_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The `code` label of a close: the codes this server or a well-behaved
/// client uses, and `other` for the rest. Clients choose their close code,
/// so labelling by it as sent would let anyone create metric series without
/// bound.
fn close_code_label(code: u16) -> String {
    use crate::protocol::close_code::*;
    const KNOWN: &[u16] = &[
        1000,
        1001,
        1002,
        1003,
        1005,
        1006,
        1007,
        1008,
        1009,
        1011,
        TLS_ONLY,
        APP_NOT_FOUND,
        APP_DISABLED,
        OVER_CONNECTION_QUOTA,
        PATH_NOT_FOUND,
        INVALID_VERSION,
        UNSUPPORTED_PROTOCOL,
        NO_PROTOCOL,
        UNAUTHORIZED,
        OVER_CAPACITY,
        RECONNECT_NOW,
        PONG_NOT_RECEIVED,
        CLOSED_AFTER_INACTIVITY,
    ];
    if KNOWN.contains(&code) {
        code.to_string()
    } else {
        "other".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_with_their_labels() {
        let sent = Arc::new(SentTotals::default());
        let metrics = Metrics::new(false, sent.clone());
        metrics.connection_opened();
        metrics.connection_closed(4100);
        metrics.api_request("events", 200);
        sent.add(3, 30);
        let text = metrics.render(Snapshot {
            connections: 2,
            channels: 1,
            subscriptions: 2,
            presence_members: 0,
            cluster: None,
            webhooks: None,
        });
        assert!(text.contains("flarum_ws_connections 2\n"), "{text}");
        assert!(text.contains("flarum_ws_connections_opened_total 1\n"));
        assert!(text.contains("flarum_ws_connections_closed_total{code=\"4100\"} 1\n"));
        assert!(text.contains("flarum_ws_slow_consumer_disconnects_total 1\n"));
        assert!(
            text.contains(
                "flarum_ws_http_api_requests_total{endpoint=\"events\",status=\"200\"} 1\n"
            )
        );
        assert!(text.contains("flarum_ws_messages_sent_total 3\n"));
        assert!(text.contains("flarum_ws_sent_bytes_total 30\n"));
        assert!(text.ends_with("# EOF\n"));
    }

    /// Every row is exported, as its kind, and nothing is exported that
    /// has no row: the rows are what docs/operations.md lists and what the
    /// Grafana board may query.
    #[test]
    fn the_rows_are_exactly_what_is_exported() {
        let rendered = |with_cluster| {
            let metrics = Metrics::new(with_cluster, Arc::new(SentTotals::default()));
            // A family is shown once it has a series.
            metrics.connection_closed(1000);
            metrics.connection_refused(4001);
            metrics.refused("server_full");
            metrics.api_request("events", 200);
            metrics.render(Snapshot::default())
        };
        let text = rendered(true);
        let exported: Vec<(&str, &str)> = text
            .lines()
            .filter_map(|line| line.strip_prefix("# TYPE "))
            .filter_map(|rest| rest.split_once(' '))
            .collect();
        let rows: Vec<(&str, &str)> = ROWS
            .iter()
            .map(|row| (row.name, row.kind.as_str()))
            .collect();
        assert_eq!(exported, rows);
        let single = rendered(false);
        for row in ROWS {
            assert_eq!(
                single.contains(&format!("# TYPE {} ", row.name)),
                !row.cluster_only,
                "{}",
                row.name
            );
        }
    }
}
