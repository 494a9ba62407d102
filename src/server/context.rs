//! What every connection task shares: settings (swapped whole on reload),
//! the hub, counters, the shutdown token and the task tracker that shutdown
//! waits on.

use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::admission::ConnectionSlots;
use super::counters::Counters;
use crate::config::Settings;
use crate::hub::{Hub, HubLimits};

pub struct ServerContext {
    settings: ArcSwap<Settings>,
    pub hub: Hub,
    pub counters: Counters,
    /// Cancelled when the server should stop; sessions then close with 4200.
    pub shutdown: CancellationToken,
    /// Every connection task, so shutdown can wait for them.
    pub tracker: TaskTracker,
    /// Set when the server itself terminates TLS.
    pub tls: Option<TlsAcceptor>,
    /// Open websocket connections, in all and per client address.
    pub slots: Arc<ConnectionSlots>,
}

fn hub_limits(settings: &Settings) -> HubLimits {
    HubLimits {
        max_presence_members: settings.limits.max_presence_members,
        cache_ttl: settings.limits.cache_ttl,
    }
}

impl ServerContext {
    pub fn new(settings: Settings, shutdown: CancellationToken) -> Self {
        Self {
            hub: Hub::new(hub_limits(&settings)),
            settings: ArcSwap::from_pointee(settings),
            counters: Counters::default(),
            shutdown,
            tracker: TaskTracker::new(),
            tls: None,
            slots: Arc::new(ConnectionSlots::default()),
        }
    }

    /// Serve every connection over TLS with `acceptor`.
    pub fn with_tls(mut self, acceptor: TlsAcceptor) -> Self {
        self.tls = Some(acceptor);
        self
    }

    /// The settings in force now; a connection keeps what it read.
    pub fn settings(&self) -> Arc<Settings> {
        self.settings.load_full()
    }

    /// Applies reloaded settings: credentials and limits take effect for
    /// new requests and messages at once; connections stay open.
    pub fn apply(&self, settings: Settings) {
        self.hub.set_limits(hub_limits(&settings));
        self.settings.store(Arc::new(settings));
    }
}
