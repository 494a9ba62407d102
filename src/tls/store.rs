//! The certificate in use, swapped atomically when the files change or on
//! SIGHUP. A broken new pair is refused and the old one keeps serving.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::chain::log_concerns;
use super::keys::load_certified_key;
use crate::config::TlsFiles;

/// How often the certificate files are checked for changes.
const POLL_INTERVAL: Duration = Duration::from_secs(2);

/// The certificate new TLS connections get, swapped when the files are
/// renewed (open connections keep theirs).
#[derive(Debug)]
pub struct CertStore {
    current: ArcSwap<CertifiedKey>,
    /// Asks the watcher to reload now (SIGHUP).
    reload: Notify,
}

impl CertStore {
    pub fn new(initial: Arc<CertifiedKey>) -> Self {
        Self {
            current: ArcSwap::new(initial),
            reload: Notify::new(),
        }
    }

    /// Reload the files at once instead of at the next poll.
    pub fn request_reload(&self) {
        self.reload.notify_one();
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Reloads `files` into `store` whenever either file changes or a reload is
/// requested, until `shutdown`.
pub async fn watch_files(store: Arc<CertStore>, files: TlsFiles, shutdown: CancellationToken) {
    let stamp = |files: &TlsFiles| (modified(&files.cert), modified(&files.key));
    let mut seen = stamp(&files);
    loop {
        let forced = tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(POLL_INTERVAL) => false,
            _ = store.reload.notified() => true,
        };
        let now = stamp(&files);
        if now == seen && !forced {
            continue;
        }
        seen = now;
        match load_certified_key(&files) {
            Ok(pair) => {
                store.current.store(pair.certified.clone());
                tracing::info!(
                    "Loaded the certificate {} for new connections",
                    files.cert.display()
                );
                log_concerns(&files.cert, &pair);
            }
            Err(error) => {
                tracing::error!(
                    "Keeping the current certificate: the new one is unusable: {error}. Fix: {}",
                    error.fix()
                )
            }
        }
    }
}
