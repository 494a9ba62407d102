//! What has been written to clients since startup, counted where it is
//! written (the hub's writers, the sessions) and read by telemetry when it
//! reports. The hub keeps these totals itself so that the delivery path does
//! not reach into the metrics: telemetry reads the hub, not the other way.

use std::sync::atomic::{AtomicU64, Ordering};

/// Frames and payload bytes written to clients.
#[derive(Debug, Default)]
pub struct SentTotals {
    messages: AtomicU64,
    bytes: AtomicU64,
}

impl SentTotals {
    /// `messages` frames of `bytes` payload bytes in all were written.
    pub fn add(&self, messages: u64, bytes: u64) {
        self.messages.fetch_add(messages, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn messages(&self) -> u64 {
        self.messages.load(Ordering::Relaxed)
    }

    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
}
