//! Rate limits with no timer to run. A fixed one-second window counter:
//! cheap, exact enough for limits stated as "N per second"; used per
//! connection for client events (4301) and per app key for HTTP API
//! requests (429). A token bucket where a burst is normal and a steady
//! stream is not: subscriptions, which a tab sends all at once when it
//! (re)connects, and which a client cycling channel names would otherwise
//! turn into a flood of channel changes (webhooks, cluster counts); and the
//! same bucket per client address, for new channels, which a client could
//! otherwise create without end by reconnecting. Keyed buckets with a
//! burst of one are the throttles of Flarum 2's typing signals (one per
//! user, or per typist and target, each interval).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
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
        self.take(burst, per_second as f32)
    }

    /// [`TokenBucket::try_take`] at a rate that may be below one a second.
    fn take(&mut self, burst: u32, per_second: f32) -> bool {
        let now = Instant::now();
        let refill = now.duration_since(self.updated).as_secs_f32() * per_second;
        self.tokens = (self.tokens + refill).min(burst as f32);
        self.updated = now;
        if self.tokens < 1.0 {
            return false;
        }
        self.tokens -= 1.0;
        true
    }
}

/// A token bucket per key (a client address), with a bounded number of
/// keys: when the map is full, keys whose bucket has refilled are dropped
/// (they hold nothing a new bucket would not), and if that frees nothing,
/// every key is, which at worst hands a few addresses a fresh burst.
#[derive(Debug)]
pub struct KeyedBuckets<K> {
    buckets: Mutex<HashMap<K, TokenBucket>>,
    burst: u32,
    per_second: f32,
    max_keys: usize,
}

impl<K: Hash + Eq> KeyedBuckets<K> {
    pub fn new(burst: u32, per_second: u32, max_keys: usize) -> Self {
        Self {
            buckets: Mutex::new(HashMap::new()),
            burst,
            per_second: per_second as f32,
            max_keys,
        }
    }

    /// One per `interval` for each key (a throttle: the first goes at
    /// once, the next after `interval`).
    pub fn one_per(interval: Duration, max_keys: usize) -> Self {
        Self {
            buckets: Mutex::new(HashMap::new()),
            burst: 1,
            per_second: 1.0 / interval.as_secs_f32(),
            max_keys,
        }
    }

    /// Takes one of `key`'s tokens; false when it has none left.
    pub fn try_take(&self, key: K) -> bool {
        self.try_take_scaled(key, 1)
    }

    /// [`KeyedBuckets::try_take`] with `key`'s burst and rate `times` the
    /// bucket's (a key that stands for many clients gets an allowance for
    /// each share of them).
    pub fn try_take_scaled(&self, key: K, times: u32) -> bool {
        let times = times.max(1);
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= self.max_keys && !buckets.contains_key(&key) {
            let (burst, per_second) = (self.burst, self.per_second);
            buckets.retain(|_, bucket| !bucket.is_full(burst, per_second));
            if buckets.len() >= self.max_keys {
                buckets.clear();
            }
        }
        let burst = self.burst.saturating_mul(times);
        buckets
            .entry(key)
            .or_insert_with(|| TokenBucket::full(burst))
            .take(burst, self.per_second * times as f32)
    }
}

impl TokenBucket {
    /// Whether the bucket has refilled to its burst by now.
    fn is_full(&self, burst: u32, per_second: f32) -> bool {
        let refill = self.updated.elapsed().as_secs_f32() * per_second;
        self.tokens + refill >= burst as f32
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
    fn a_scaled_key_gets_its_allowance_times_over() {
        let buckets = KeyedBuckets::new(2, 1, 10);
        assert!((0..6).all(|_| buckets.try_take_scaled("office", 3)));
        assert!(!buckets.try_take_scaled("office", 3));
        assert!(buckets.try_take("home") && buckets.try_take("home"));
        assert!(!buckets.try_take("home"));
    }

    #[test]
    fn one_per_interval_lets_the_first_through_and_the_next_after_it() {
        let throttle = KeyedBuckets::one_per(Duration::from_millis(100), 10);
        assert!(throttle.try_take("a"));
        assert!(!throttle.try_take("a"));
        assert!(throttle.try_take("b"), "each key has its own");
        std::thread::sleep(Duration::from_millis(110));
        assert!(throttle.try_take("a"));
    }

    #[test]
    fn keyed_buckets_are_separate_and_bounded_in_keys() {
        let buckets = KeyedBuckets::new(2, 1, 3);
        assert!(buckets.try_take(1) && buckets.try_take(1));
        assert!(!buckets.try_take(1), "key 1 spent its burst");
        assert!(buckets.try_take(2), "key 2 has its own");
        buckets.try_take(3);
        // A fourth key: the full ones (none here, all were used) would go
        // first; then everything does, and the map never passes its bound.
        assert!(buckets.try_take(4));
        assert!(buckets.buckets.lock().unwrap().len() <= 3);
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
