//! Closing the websockets of a server that steps aside for a new one
//! (`handover`): with every tab closed at the same moment, every tab
//! reconnects at the same moment, and each asks the forum's PHP to
//! authorize its private and presence channels again, a burst the forum
//! pays for. Spread over `close_spread`, the burst becomes a stream.
//!
//! Each connection waits on one of [`GROUPS`] tokens (chosen by its socket
//! id), and the groups are cancelled one after another across the window:
//! no timer per connection, so the spread costs no memory per tab. A stop
//! with no successor (SIGTERM, a restart under systemd) closes every group
//! at once: no one would accept the reconnections meanwhile.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::protocol::SocketId;

/// Groups of connections closed together.
const GROUPS: usize = 64;

/// One token per group; a connection ends with 4200 when its group's is
/// cancelled.
pub struct CloseSchedule {
    groups: Vec<CancellationToken>,
}

impl Default for CloseSchedule {
    fn default() -> Self {
        Self {
            groups: (0..GROUPS).map(|_| CancellationToken::new()).collect(),
        }
    }
}

impl CloseSchedule {
    /// The token the connection `socket` closes on.
    pub fn token_for(&self, socket: SocketId) -> CancellationToken {
        let group = usize::try_from(socket.as_u64() % GROUPS as u64).unwrap_or(0);
        self.groups[group].clone()
    }

    /// Closes the groups one after another over `spread` (at once when it
    /// is zero); returns once the last is told.
    pub async fn close(&self, spread: Duration) {
        let step = spread / GROUPS as u32;
        for (n, group) in self.groups.iter().enumerate() {
            if n > 0 && !step.is_zero() {
                tokio::time::sleep(step).await;
            }
            group.cancel();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_groups_are_closed_across_the_window() {
        let schedule = CloseSchedule::default();
        let first = schedule.token_for("1.64".parse().unwrap());
        let last = schedule.token_for("1.63".parse().unwrap());
        let started = tokio::time::Instant::now();
        let closing = schedule.close(Duration::from_secs(64));
        tokio::pin!(closing);
        tokio::select! {
            () = &mut closing => unreachable!("the window is not over"),
            () = first.cancelled() => {}
        }
        assert!(started.elapsed() < Duration::from_secs(1));
        assert!(!last.is_cancelled());
        closing.await;
        assert!(last.is_cancelled());
        assert!(started.elapsed() >= Duration::from_secs(63));
    }
}
