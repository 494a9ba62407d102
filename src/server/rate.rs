//! A fixed one-second window counter: cheap, exact enough for limits stated
//! as "N per second", and with no timer to run. Used per connection for
//! client events (4301) and per app key for HTTP API requests (429).

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_the_limit_then_refuses_until_the_next_second() {
        let mut window = RateWindow::default();
        assert!((0..3).all(|_| window.try_take(3)));
        assert!(!window.try_take(3));
        window.started -= Duration::from_secs(1);
        assert!(window.try_take(3));
    }
}
