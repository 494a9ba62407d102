//! What every connection task shares: settings, the hub, the shutdown token
//! and the task tracker that shutdown waits on.

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Settings;
use crate::hub::{Hub, HubLimits};

pub struct ServerContext {
    pub settings: Settings,
    pub hub: Hub,
    /// Cancelled when the server should stop; sessions then close with 4200.
    pub shutdown: CancellationToken,
    /// Every connection task, so shutdown can wait for them.
    pub tracker: TaskTracker,
}

impl ServerContext {
    pub fn new(settings: Settings, shutdown: CancellationToken) -> Self {
        let hub = Hub::new(HubLimits {
            max_presence_members: settings.limits.max_presence_members,
            cache_ttl: settings.limits.cache_ttl,
        });
        Self {
            settings,
            hub,
            shutdown,
            tracker: TaskTracker::new(),
        }
    }
}
