//! What the server tells its operators: logs, Prometheus metrics, the
//! dashboard's recent-activity feed, the forum's statistics widget and
//! systemd notifications.
//!
//! The server's handlers report what happens through one [`Telemetry`]
//! handle, whose event methods feed every observer that wants the event
//! (a closed connection is a statistics count, a metric and a feed item),
//! so that no handler keeps parallel calls in step.

pub mod counters;
pub mod feed;
pub mod logging;
pub mod metrics;
pub mod statistics;
pub mod systemd;

use std::sync::Arc;
use std::time::Duration;

use counters::{Counters, IntervalCounts};
use feed::{Feed, FeedItem};
use metrics::{Metrics, Snapshot, Traffic};

use crate::hub::SentTotals;

/// Every observer of the server, fed by event.
pub struct Telemetry {
    /// The forum's statistics widget's counts (shared with its writer).
    pub counters: Arc<Counters>,
    metrics: Metrics,
    feed: Feed,
}

impl Telemetry {
    /// `clustered`: whether the metrics report the Redis adapter; `sent`:
    /// the hub's totals of what was written to clients.
    pub fn new(clustered: bool, sent: Arc<SentTotals>) -> Self {
        Self {
            counters: Arc::new(Counters::default()),
            metrics: Metrics::new(clustered, sent),
            feed: Feed::default(),
        }
    }

    pub fn connection_opened(&self) {
        self.counters.connection_opened();
        self.metrics.connection_opened();
    }

    /// A websocket connection ended with `code`; `seen` for the feed.
    pub fn connection_closed(&self, code: u16, seen: FeedItem) {
        self.counters.connection_closed();
        self.metrics.connection_closed(code);
        self.feed.record(seen);
    }

    /// Something was refused or cut for `reason` (see
    /// `flarum_ws_refusals_total`).
    pub fn refused(&self, reason: &'static str) {
        self.metrics.refused(reason);
    }

    /// A websocket upgrade was refused with `code`.
    pub fn connection_refused(&self, code: u16) {
        self.metrics.connection_refused(code);
    }

    /// A client message of `bytes` arrived.
    pub fn message_received(&self, bytes: usize) {
        self.counters.websocket_message();
        self.metrics.message_received(bytes);
    }

    /// An HTTP API request to `endpoint` was answered with `status`.
    pub fn api_request(&self, endpoint: &'static str, status: u16) {
        self.metrics.api_request(endpoint, status);
    }

    /// The HTTP API accepted `events` events.
    pub fn api_events(&self, events: u64) {
        self.counters.api_messages(events);
        self.metrics.api_events(events);
    }

    /// An event was fanned out in `took`; `seen` for the feed.
    pub fn published(&self, took: Duration, seen: FeedItem) {
        self.metrics.fanout(took);
        self.feed.record(seen);
    }

    /// Something worth showing on the dashboard's feed.
    pub fn record(&self, seen: FeedItem) {
        self.feed.record(seen);
    }

    /// Open websocket connections now.
    pub fn connections(&self) -> u64 {
        self.counters.connections()
    }

    /// Bytes and messages in and out so far.
    pub fn traffic(&self) -> Traffic {
        self.metrics.traffic()
    }

    /// The feed's items after `after`.
    pub fn feed_since(&self, after: u64) -> Vec<FeedItem> {
        self.feed.since(after)
    }

    /// The metrics as text, with the state of `snapshot`.
    pub fn render(&self, snapshot: Snapshot) -> String {
        self.metrics.render(snapshot)
    }

    /// This interval's statistics counts, starting the next.
    pub fn take_interval(&self) -> IntervalCounts {
        self.counters.take_interval()
    }
}
