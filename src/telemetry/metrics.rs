//! Prometheus metrics, in the OpenMetrics text format on `/metrics`.
//!
//! Counters on the hot path are single relaxed atomic adds (the websocket
//! writer adds once per batch, not per frame); gauges that describe state
//! (connections, channels, subscriptions, memory) are read when scraped, so
//! nothing has to keep them in step.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

use crate::cluster::ClusterStatus;
use crate::hub::SentTotals;
use crate::webhooks::WebhookStatus;

/// Content type of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

type CodeLabel = [(&'static str, String); 1];
type RequestLabels = [(&'static str, String); 2];

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

pub struct Metrics {
    registry: Registry,
    connections: Gauge,
    connections_opened: Counter,
    connections_closed: Family<CodeLabel, Counter>,
    connections_refused: Family<CodeLabel, Counter>,
    channels: Gauge,
    subscriptions: Gauge,
    presence_members: Gauge,
    messages_received: Counter,
    messages_sent: Counter,
    bytes_received: Counter,
    bytes_sent: Counter,
    api_requests: Family<RequestLabels, Counter>,
    api_events: Counter,
    fanout_seconds: Histogram,
    /// The hub's totals, which the two sent counters are brought up to.
    sent: Arc<SentTotals>,
    slow_consumers: Counter,
    resident_memory: Gauge,
    open_fds: Gauge,
    redis_up: Gauge,
    cluster_nodes: Gauge,
    bus_published: Counter,
    bus_received: Counter,
    bus_dropped: Counter,
    webhooks_sent: Counter,
    webhooks_failed: Counter,
    webhooks_dropped: Counter,
}

impl Metrics {
    /// The metrics of one node; `with_cluster` adds the Redis adapter's.
    /// `sent` is read for the sent-message counters.
    pub fn new(with_cluster: bool, sent: Arc<SentTotals>) -> Self {
        let mut root = Registry::default();
        let metrics = Self {
            registry: Registry::default(),
            connections: Gauge::default(),
            connections_opened: Counter::default(),
            connections_closed: Family::default(),
            connections_refused: Family::default(),
            channels: Gauge::default(),
            subscriptions: Gauge::default(),
            presence_members: Gauge::default(),
            messages_received: Counter::default(),
            messages_sent: Counter::default(),
            bytes_received: Counter::default(),
            bytes_sent: Counter::default(),
            api_requests: Family::default(),
            api_events: Counter::default(),
            // 10 µs to about 0.7 s.
            fanout_seconds: Histogram::new(exponential_buckets(0.000_01, 4.0, 9)),
            sent,
            slow_consumers: Counter::default(),
            resident_memory: Gauge::default(),
            open_fds: Gauge::default(),
            redis_up: Gauge::default(),
            cluster_nodes: Gauge::default(),
            bus_published: Counter::default(),
            bus_received: Counter::default(),
            bus_dropped: Counter::default(),
            webhooks_sent: Counter::default(),
            webhooks_failed: Counter::default(),
            webhooks_dropped: Counter::default(),
        };
        let own = root.sub_registry_with_prefix("flarum_ws");
        own.register(
            "build",
            "Version of the running flarum-ws",
            Info::new([("version", env!("CARGO_PKG_VERSION"))]),
        );
        own.register(
            "connections",
            "Open websocket connections",
            metrics.connections.clone(),
        );
        own.register(
            "connections_opened",
            "Websocket connections accepted",
            metrics.connections_opened.clone(),
        );
        own.register(
            "connections_closed",
            "Websocket connections closed, by close code (the client's, or the server's: 4100 slow consumer, 4200 shutdown, 4201 pong timeout, 4009 terminated; 1006 vanished)",
            metrics.connections_closed.clone(),
        );
        own.register(
            "connections_refused",
            "Websocket connections refused before the session started, by close code (4001 app, 4004/4100 limits, 4007 protocol, 4009 origin)",
            metrics.connections_refused.clone(),
        );
        own.register(
            "channels",
            "Channels with at least one subscriber",
            metrics.channels.clone(),
        );
        own.register(
            "subscriptions",
            "Channel subscriptions of all connections",
            metrics.subscriptions.clone(),
        );
        own.register(
            "presence_members",
            "Members of presence channels (users, summed over channels)",
            metrics.presence_members.clone(),
        );
        own.register(
            "messages_received",
            "Websocket messages received from clients",
            metrics.messages_received.clone(),
        );
        own.register(
            "messages_sent",
            "Websocket messages sent to clients",
            metrics.messages_sent.clone(),
        );
        own.register_with_unit(
            "received",
            "Payload bytes of websocket messages received",
            Unit::Bytes,
            metrics.bytes_received.clone(),
        );
        own.register_with_unit(
            "sent",
            "Payload bytes of websocket messages sent",
            Unit::Bytes,
            metrics.bytes_sent.clone(),
        );
        own.register(
            "http_api_requests",
            "HTTP API requests, by endpoint and status",
            metrics.api_requests.clone(),
        );
        own.register(
            "http_api_events",
            "Events published through the HTTP API",
            metrics.api_events.clone(),
        );
        own.register_with_unit(
            "fanout_duration",
            "Time to queue one event to every local subscriber of a channel",
            Unit::Seconds,
            metrics.fanout_seconds.clone(),
        );
        own.register(
            "slow_consumer_disconnects",
            "Connections closed with 4100 because their queue filled",
            metrics.slow_consumers.clone(),
        );
        own.register(
            "webhooks_sent",
            "Webhook events a receiver acknowledged with 2xx",
            metrics.webhooks_sent.clone(),
        );
        own.register(
            "webhooks_failed",
            "Webhook requests that failed or were answered other than 2xx (each is retried)",
            metrics.webhooks_failed.clone(),
        );
        own.register(
            "webhooks_dropped",
            "Webhook events given up on: retried for 5 minutes, or their queue was full",
            metrics.webhooks_dropped.clone(),
        );
        if with_cluster {
            own.register(
                "redis_up",
                "1 while the Redis adapter is subscribed to the cluster's channel, 0 while Redis is away",
                metrics.redis_up.clone(),
            );
            own.register(
                "cluster_nodes",
                "Nodes in the cluster, this one included",
                metrics.cluster_nodes.clone(),
            );
            own.register(
                "redis_messages_published",
                "Messages this node published to the cluster",
                metrics.bus_published.clone(),
            );
            own.register(
                "redis_messages_received",
                "Messages from other nodes applied by this node",
                metrics.bus_received.clone(),
            );
            own.register(
                "redis_messages_dropped",
                "Messages for other nodes dropped because Redis was unreachable or slow",
                metrics.bus_dropped.clone(),
            );
        }
        root.register_with_unit(
            "process_resident_memory",
            "Resident memory of the process",
            Unit::Bytes,
            metrics.resident_memory.clone(),
        );
        root.register(
            "process_open_fds",
            "Open file descriptors of the process",
            metrics.open_fds.clone(),
        );
        Self {
            registry: root,
            ..metrics
        }
    }

    pub fn connection_opened(&self) {
        self.connections_opened.inc();
    }

    /// A session ended with `code` (the client's close code, or the server's).
    pub fn connection_closed(&self, code: u16) {
        self.connections_closed
            .get_or_create(&[("code", close_code_label(code))])
            .inc();
        if code == crate::protocol::close_code::OVER_CAPACITY {
            self.slow_consumers.inc();
        }
    }

    /// A websocket was refused with `code` before its session started.
    pub fn connection_refused(&self, code: u16) {
        self.connections_refused
            .get_or_create(&[("code", close_code_label(code))])
            .inc();
    }

    pub fn message_received(&self, bytes: usize) {
        self.messages_received.inc();
        self.bytes_received.inc_by(bytes as u64);
    }

    pub fn api_request(&self, endpoint: &'static str, status: u16) {
        self.api_requests
            .get_or_create(&[
                ("endpoint", endpoint.to_owned()),
                ("status", status.to_string()),
            ])
            .inc();
    }

    pub fn api_events(&self, events: u64) {
        self.api_events.inc_by(events);
    }

    pub fn fanout(&self, took: Duration) {
        self.fanout_seconds.observe(took.as_secs_f64());
    }

    /// Totals since startup, for the dashboard.
    pub fn traffic(&self) -> Traffic {
        Traffic {
            connections_opened: self.connections_opened.get(),
            messages_received: self.messages_received.get(),
            messages_sent: self.sent.messages(),
            bytes_sent: self.sent.bytes(),
            api_events: self.api_events.get(),
        }
    }

    /// The metrics as OpenMetrics text, with state read from `snapshot`.
    pub fn render(&self, snapshot: Snapshot) -> String {
        self.connections.set(snapshot.connections as i64);
        self.channels.set(snapshot.channels as i64);
        self.subscriptions.set(snapshot.subscriptions as i64);
        self.presence_members.set(snapshot.presence_members as i64);
        for (counter, total) in [
            (&self.messages_sent, self.sent.messages()),
            (&self.bytes_sent, self.sent.bytes()),
        ] {
            counter.inc_by(total.saturating_sub(counter.get()));
        }
        if let Some(cluster) = snapshot.cluster {
            self.redis_up.set(i64::from(cluster.redis_up));
            self.cluster_nodes.set(cluster.other_nodes as i64 + 1);
            // The adapter keeps the totals; bring the counters up to them.
            for (counter, total) in [
                (&self.bus_published, cluster.published),
                (&self.bus_received, cluster.received),
                (&self.bus_dropped, cluster.dropped),
            ] {
                counter.inc_by(total.saturating_sub(counter.get()));
            }
        }
        if let Some(webhooks) = snapshot.webhooks {
            for (counter, total) in [
                (&self.webhooks_sent, webhooks.sent),
                (&self.webhooks_failed, webhooks.failed),
                (&self.webhooks_dropped, webhooks.dropped),
            ] {
                counter.inc_by(total.saturating_sub(counter.get()));
            }
        }
        if let Some(rss) = resident_memory_bytes() {
            self.resident_memory.set(rss as i64);
        }
        if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
            self.open_fds.set(fds.count() as i64);
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
}
