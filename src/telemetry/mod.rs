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
pub mod history;
pub mod logging;
pub mod metrics;
pub mod statistics;
pub mod systemd;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use counters::{Counters, IntervalCounts};
use feed::{Feed, FeedItem};
use history::{History, Reading, View};
use metrics::{Metrics, Snapshot, Traffic};

use crate::hub::SentTotals;

/// Every observer of the server, fed by event.
pub struct Telemetry {
    /// The forum's statistics widget's counts (shared with its writer).
    pub counters: Arc<Counters>,
    metrics: Metrics,
    feed: Feed,
    /// The dashboard's graphs and marks.
    history: Mutex<History>,
    /// Refusals by reason (in [`metrics::REFUSAL_REASONS`]' order) and
    /// refused websocket upgrades, for the history.
    refusals: [AtomicU64; metrics::REFUSAL_REASONS.len()],
    upgrades_refused: AtomicU64,
}

impl Telemetry {
    /// `clustered`: whether the metrics report the Redis adapter; `sent`:
    /// the hub's totals of what was written to clients.
    pub fn new(clustered: bool, sent: Arc<SentTotals>) -> Self {
        let mut history = History::default();
        history.mark(
            "start",
            format!(
                "flarum-ws {} started (pid {})",
                env!("CARGO_PKG_VERSION"),
                std::process::id()
            ),
        );
        Self {
            counters: Arc::new(Counters::default()),
            metrics: Metrics::new(clustered, sent),
            feed: Feed::default(),
            history: Mutex::new(history),
            refusals: Default::default(),
            upgrades_refused: AtomicU64::new(0),
        }
    }

    fn history(&self) -> std::sync::MutexGuard<'_, History> {
        self.history.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Shows `text` on the dashboard's timeline as a mark of `kind`.
    pub fn mark(&self, kind: &'static str, text: impl Into<String>) {
        self.history().mark(kind, text);
    }

    /// Samples the server's state into the history (`reading` without
    /// the refusals, which are counted here).
    pub fn sample(&self, mut reading: Reading) {
        for (total, count) in reading.refusals.iter_mut().zip(&self.refusals) {
            *total = count.load(Ordering::Relaxed);
        }
        reading.upgrades_refused = self.upgrades_refused.load(Ordering::Relaxed);
        let traffic = self.traffic();
        reading.messages_in = traffic.messages_received;
        reading.messages_out = traffic.messages_sent;
        reading.api_events = traffic.api_events;
        reading.connections = self.connections();
        self.history().sample(reading, std::time::SystemTime::now());
    }

    /// The last hour, or (`day`) the last day, for the dashboard.
    pub fn history_view(&self, day: bool) -> View {
        self.history().view(day)
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
        if let Some(n) = metrics::REFUSAL_REASONS.iter().position(|r| *r == reason) {
            self.refusals[n].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A websocket upgrade was refused with `code`.
    pub fn connection_refused(&self, code: u16) {
        self.metrics.connection_refused(code);
        self.upgrades_refused.fetch_add(1, Ordering::Relaxed);
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
