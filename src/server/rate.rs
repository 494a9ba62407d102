//! Rate limits with no timer to run. A fixed one-second window counter:
//! cheap, exact enough for limits stated as "N per second"; used per
//! connection for client events (4301) and per app key for HTTP API
//! requests (429). A token bucket where a burst is normal and a steady
//! stream is not: subscriptions, which a tab sends all at once when it
//! (re)connects, and which a client cycling channel names would otherwise
//! turn into a flood of channel changes (webhooks, cluster counts).

use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
pub struct RateWindow {
    started: Instant,
    taken: u32,
}

impl Default for RateWindow {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            taken: 0,
        }
    }
}

impl RateWindow {
    /// Counts one use; false when `limit` were already used this second.
    pub fn try_take(&mut self, limit: u32) -> bool {
        if self.started.elapsed() >= Duration::from_secs(1) {
            self.started = Instant::now();
            self.taken = 0;
        }
        if self.taken >= limit {
            return false;
        }
        self.taken += 1;
        true
    }
}

/// Up to `burst` at once, then `per_second`.
#[derive(Debug, Clone, Copy)]
pub struct TokenBucket {
    tokens: f32,
    updated: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn full(burst: u32) -> Self {
        Self {
            tokens: burst as f32,
            updated: Instant::now(),
        }
    }

    /// Takes one token; false when none is left.
    pub fn try_take(&mut self, burst: u32, per_second: u32) -> bool {
        let now = Instant::now();
        let refill = now.duration_since(self.updated).as_secs_f32() * per_second as f32;
        self.tokens = (self.tokens + refill).min(burst as f32);
        self.updated = now;
        if self.tokens < 1.0 {
            return false;
        }
        self.tokens -= 1.0;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let mut bucket = TokenBucket::full(5);
        assert!((0..5).all(|_| bucket.try_take(5, 10)));
        assert!(!bucket.try_take(5, 10));
        bucket.updated -= Duration::from_millis(250);
        assert!(bucket.try_take(5, 10) && bucket.try_take(5, 10));
        assert!(!bucket.try_take(5, 10), "2.5 tokens came back in 250 ms");
        bucket.updated -= Duration::from_secs(60);
        assert!(
            (0..5).all(|_| bucket.try_take(5, 10)),
            "never more than the burst"
        );
        assert!(!bucket.try_take(5, 10));
    }

    #[test]
    fn allows_the_limit_then_refuses_until_the_next_second() {
        let mut window = RateWindow::default();
        assert!((0..3).all(|_| window.try_take(3)));
        assert!(!window.try_take(3));
        window.started -= Duration::from_secs(1);
        assert!(window.try_take(3));
    }
}
