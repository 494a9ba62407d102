//! Giving memory back after a crowd leaves. glibc's allocator keeps freed
//! memory in its arenas for reuse, so a server that held 10 000 connections
//! would stay at that size forever; `malloc_trim` returns the free pages.
//! It runs only after the connection count has fallen well below its
//! recent peak, so it costs nothing in steady state.

use std::sync::Arc;
use std::time::Duration;

use super::context::ServerContext;

/// How often the connection count is looked at.
const CHECK_INTERVAL: Duration = Duration::from_secs(5);

/// Trim when connections fell below this fraction of the peak since the last trim.
const SHRINK_FACTOR: u64 = 2;

pub async fn trim_after_disconnects(ctx: Arc<ServerContext>) {
    let mut peak = 0u64;
    let mut ticker = tokio::time::interval(CHECK_INTERVAL);
    loop {
        ticker.tick().await;
        let now = ctx.counters.connections();
        peak = peak.max(now);
        if peak >= 256 && now * SHRINK_FACTOR < peak {
            release_free_memory();
            peak = now;
        }
    }
}

/// Expired cache events in one sweep worth giving memory back for.
pub const TRIM_AFTER_EXPIRED: usize = 100;

pub fn release_free_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only walks the allocator's own free lists; it is
    // thread-safe and has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}
