//! Giving memory back after a crowd leaves or a burst ends. glibc's
//! allocator keeps freed memory in its arenas for reuse, so a server that
//! held 10 000 connections, or wrote a burst of large events to all of them,
//! would stay at that size forever; `malloc_trim` returns the free pages.
//! It runs only when connections (websockets and HTTP requests alike) fell
//! well below their recent peak, or when a busy interval of writing was
//! followed by a quiet one, so it costs nothing in steady state.

use std::sync::Arc;
use std::time::Duration;

use super::context::ServerContext;

/// How often the connection count and the bytes written are looked at.
const CHECK_INTERVAL: Duration = Duration::from_secs(5);

/// Trim when connections fell below this fraction of the peak since the last trim.
const SHRINK_FACTOR: usize = 2;

/// Bytes written in one interval that make it a burst...
const BURST_BYTES: u64 = 8 << 20;

/// ...and at most this many in the next make it over.
const QUIET_BYTES: u64 = 256 << 10;

pub async fn give_back_memory(ctx: Arc<ServerContext>) {
    let mut peak = 0;
    let mut last_sent = ctx.telemetry.traffic().bytes_sent;
    let mut last_interval_sent = 0;
    let mut ticker = tokio::time::interval(CHECK_INTERVAL);
    loop {
        ticker.tick().await;
        let open = ctx.tracker.len();
        peak = peak.max(open);
        let sent = ctx.telemetry.traffic().bytes_sent;
        let interval_sent = sent.saturating_sub(last_sent);
        let crowd_left = peak >= 256 && open * SHRINK_FACTOR < peak;
        let burst_ended = last_interval_sent >= BURST_BYTES && interval_sent <= QUIET_BYTES;
        if crowd_left || burst_ended {
            tracing::debug!(
                "giving free memory back to the system ({})",
                if crowd_left {
                    "connections fell"
                } else {
                    "a burst of writing ended"
                }
            );
            release_free_memory();
            peak = open;
        }
        last_sent = sent;
        last_interval_sent = interval_sent;
    }
}

/// Expired cache events in one sweep worth giving memory back for.
pub const TRIM_AFTER_EXPIRED: usize = 100;

// The crate's one unsafe block (Cargo.toml's [lints] deny it elsewhere).
#[allow(unsafe_code)]
pub fn release_free_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only walks the allocator's own free lists; it is
    // thread-safe and has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}
