//! `flarum-ws check`: every check an admin would otherwise do by hand, each
//! with a verdict and, when something is wrong, the fix. The Kyrne extension's
//! troubleshooting entries map onto them:
//!
//! | extension's entry | check |
//! |---|---|
//! | "Failed to listen on tcp://0.0.0.0:{port}" | `port` |
//! | ERR_SSL_VERSION_OR_CIPHER_MISMATCH | `access`, `certificate`, `private key`, `key matches`, `chain`, `names`, `expiry`, `self-signed` |
//! | "WebSocket is closed before the connection is established" (double proxy) | `live` (upgrade refused on the way) |
//! | 404 / connection interrupted (wrong proxy port, closed port) | `live`, `bind address`, `cloudflare` |

mod as_service;
mod browsers;
mod by_systemd;
mod certificate;
mod environment_file;
mod flarum2_keys;
mod idle;
mod listening;
mod live;
mod live_cluster;
mod nginx_config;
mod nginx_timeout;
mod other_forum;
mod port;
mod queue;
mod redis;
mod restarts;
mod running;
mod sandbox;
mod service_user;
mod setup;
mod unit;
mod unit_env;
mod webhooks;

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

pub use as_service::{read_context, service_view};
pub use live::LiveOptions;
pub use setup::{CheckInput, Judging, Outcome, run_checks};
pub use unit_env::service_environment;

/// A check's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Warn,
    Fail,
}

impl Status {
    /// The mark `check` prints for this status (✓, ! or ✗).
    pub fn symbol(self) -> &'static str {
        match self {
            Self::Pass => "✓",
            Self::Warn => "!",
            Self::Fail => "✗",
        }
    }
}

/// One check's result. (Deserialized too: a check judged as the service
/// runs comes back from the judging process as JSON.)
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Finding {
    pub check: Cow<'static, str>,
    pub status: Status,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Finding {
    /// A check that passed, with what it found.
    pub fn pass(check: &'static str, message: impl Into<String>) -> Self {
        Self {
            check: Cow::Borrowed(check),
            status: Status::Pass,
            message: message.into(),
            fix: None,
        }
    }

    /// A warning: what may go wrong, and what to do about it.
    pub fn warn(check: &'static str, message: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            check: Cow::Borrowed(check),
            status: Status::Warn,
            message: message.into(),
            fix: Some(fix.into()),
        }
    }

    /// A failure: what is wrong, and the fix, worded for the admin.
    pub fn fail(check: &'static str, message: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            check: Cow::Borrowed(check),
            status: Status::Fail,
            message: message.into(),
            fix: Some(fix.into()),
        }
    }
}
