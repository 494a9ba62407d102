//! An app secret that changes while the forum signs requests. On Flarum 2
//! the secret is the md5 of the database password in config.php, so a
//! password rotation changes it for the forum's PHP at once, and for
//! flarum-ws only when it reads config.php again. So that the forum's events
//! flow through the change, a request whose signature fails asks for
//! config.php to be looked at now ([`SecretWatch`]), waits for that look (a
//! few milliseconds, or the reload it starts), and is checked again with the
//! secret found. The old secret is refused from the moment the new one is
//! read, as after any rotation: an admin rotating a leaked password wants
//! it dead at once.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, watch};

/// The longest a request with a failing signature waits for config.php to
/// be looked at.
pub const LOOK_WAIT: Duration = Duration::from_secs(2);

/// Where the secret follows a file: a failing signature asks for a look,
/// and the watcher says which asks its last look answers, so that a request
/// is answered only by a look that began after it asked (one that began
/// before might have read the file before the edit).
#[derive(Default)]
pub struct SecretWatch {
    wake: Notify,
    /// Asks made so far.
    asks: AtomicU64,
    /// The asks the last finished look began after.
    answered: watch::Sender<u64>,
}

impl SecretWatch {
    /// Asks for a look now and waits until one begun after this ask has
    /// finished (at most [`LOOK_WAIT`]).
    pub async fn look_now(&self) {
        let mut answered = self.answered.subscribe();
        let ask = self.asks.fetch_add(1, Ordering::SeqCst) + 1;
        self.wake.notify_one();
        let _ = tokio::time::timeout(LOOK_WAIT, answered.wait_for(|done| *done >= ask)).await;
    }

    /// The watcher's side: resolves when a look is asked for.
    pub async fn asked(&self) {
        self.wake.notified().await;
    }

    /// The watcher's side, before it reads: the asks this look answers.
    pub fn begin(&self) -> u64 {
        self.asks.load(Ordering::SeqCst)
    }

    /// The watcher's side: the look begun at `begun` (and any reload it
    /// caused) is done.
    pub fn looked(&self, begun: u64) {
        self.answered.send_modify(|done| *done = (*done).max(begun));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_look_asked_for_is_waited_for() {
        let watch = std::sync::Arc::new(SecretWatch::default());
        let watcher = watch.clone();
        tokio::spawn(async move {
            watcher.asked().await;
            let begun = watcher.begin();
            watcher.looked(begun);
        });
        let started = std::time::Instant::now();
        watch.look_now().await;
        assert!(started.elapsed() < LOOK_WAIT);
    }
}
