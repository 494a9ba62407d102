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

use std::time::Duration;

use tokio::sync::{Notify, watch};

/// The longest a request with a failing signature waits for config.php to
/// be looked at.
pub const LOOK_WAIT: Duration = Duration::from_secs(2);

/// Where the secret follows a file: a failing signature asks for a look,
/// and the watcher says when it has looked (and reloaded, if it changed).
#[derive(Default)]
pub struct SecretWatch {
    asked: Notify,
    looked: watch::Sender<u64>,
}

impl SecretWatch {
    /// Asks for a look now and waits until one has finished (at most
    /// [`LOOK_WAIT`]).
    pub async fn look_now(&self) {
        let mut looked = self.looked.subscribe();
        looked.mark_unchanged();
        self.asked.notify_one();
        let _ = tokio::time::timeout(LOOK_WAIT, looked.changed()).await;
    }

    /// The watcher's side: resolves when a look is asked for.
    pub async fn asked(&self) {
        self.asked.notified().await;
    }

    /// The watcher's side: a look (and any reload it caused) is done.
    pub fn looked(&self) {
        self.looked.send_modify(|n| *n = n.wrapping_add(1));
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
            watcher.looked();
        });
        let started = std::time::Instant::now();
        watch.look_now().await;
        assert!(started.elapsed() < LOOK_WAIT);
    }
}
