//! Log lines that anyone on the network could otherwise make the server
//! write as fast as they can send requests (refused connections, wrong
//! dashboard tokens): at most one per interval, saying how many were held
//! back in between, so the log stays readable and the disk stays free.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Lets one log line through per interval, counting those held back.
#[derive(Debug)]
pub struct Throttle {
    interval: Duration,
    /// When a line was last let through, and how many were held back since.
    state: Mutex<(Option<Instant>, u64)>,
}

impl Throttle {
    pub const fn new(interval: Duration) -> Self {
        Self {
            interval,
            state: Mutex::new((None, 0)),
        }
    }

    /// `Some(held_back)` when a line may be written now; `None` when it is
    /// to be held back (and counted).
    pub fn ready(&self) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (last, held_back) = &mut *state;
        let now = Instant::now();
        if last.is_some_and(|at| now.duration_since(at) < self.interval) {
            *held_back += 1;
            return None;
        }
        *last = Some(now);
        Some(std::mem::take(held_back))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_then_the_count_of_those_held_back() {
        let throttle = Throttle::new(Duration::from_millis(50));
        assert_eq!(throttle.ready(), Some(0));
        for _ in 0..5 {
            assert_eq!(throttle.ready(), None);
        }
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(throttle.ready(), Some(5));
        assert_eq!(throttle.ready(), None);
    }
}
