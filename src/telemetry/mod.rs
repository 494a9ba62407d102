//! What the server tells its operators: logs, Prometheus metrics, the
//! dashboard's recent-activity feed and systemd notifications.

pub mod feed;
pub mod logging;
pub mod metrics;
pub mod systemd;
pub mod throttle;
