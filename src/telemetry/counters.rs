//! Counts the forum's statistics widget shows: peak connections, websocket
//! messages and API messages per interval.

use std::sync::atomic::{AtomicU64, Ordering};

/// One interval's totals, taken by [`Counters::take_interval`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IntervalCounts {
    pub peak_connections: u64,
    pub websocket_messages: u64,
    pub api_messages: u64,
}

/// The counts behind the Flarum 1 extension's statistics rows: peak
/// connections and messages per interval.
#[derive(Debug, Default)]
pub struct Counters {
    connections: AtomicU64,
    peak_connections: AtomicU64,
    websocket_messages: AtomicU64,
    api_messages: AtomicU64,
}

impl Counters {
    pub fn connection_opened(&self) {
        let now = self.connections.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak_connections.fetch_max(now, Ordering::Relaxed);
    }

    pub fn connection_closed(&self) {
        self.connections.fetch_sub(1, Ordering::Relaxed);
    }

    /// A message received from a websocket client.
    pub fn websocket_message(&self) {
        self.websocket_messages.fetch_add(1, Ordering::Relaxed);
    }

    /// `events` events published through the HTTP API.
    pub fn api_messages(&self, events: u64) {
        self.api_messages.fetch_add(events, Ordering::Relaxed);
    }

    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }

    /// Returns the interval's counts and starts the next interval; its peak
    /// starts at the connections open now.
    pub fn take_interval(&self) -> IntervalCounts {
        let current = self.connections.load(Ordering::Relaxed);
        IntervalCounts {
            peak_connections: self.peak_connections.swap(current, Ordering::Relaxed),
            websocket_messages: self.websocket_messages.swap(0, Ordering::Relaxed),
            api_messages: self.api_messages.swap(0, Ordering::Relaxed),
        }
    }
}
