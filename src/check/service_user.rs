//! Whose permissions matter: the account the service runs as, which is
//! rarely the one running `check` (root, usually). Named by `--user`, else
//! read from the installed unit's `User=` (drop-ins from `systemctl edit`
//! win), else the account running `check`.

use super::Finding;
use super::unit::ServiceUnit;
use crate::access::{Account, Blocked};

/// The account whose access to files is checked, and why it is that one.
pub struct ServiceUser {
    pub account: Account,
    pub source: String,
}

impl ServiceUser {
    /// The account of this process, when it is the one systemd started as
    /// the service: its access is the service's own.
    pub fn this_process() -> Self {
        Self {
            account: Account::current(),
            source: "the service's user: systemd runs this check as it runs the service".into(),
        }
    }

    /// The `access` failure for a file this account cannot read.
    pub fn blocked(&self, blocked: &Blocked) -> Finding {
        Finding::fail(
            "access",
            format!(
                "{} ({}): the service would fail to start",
                blocked.describe(&self.account),
                self.source
            ),
            blocked.fix(&self.account),
        )
    }
}

/// The account to judge file access for: `named`, else the `User=` of
/// `unit` (the last one of the unit and its drop-ins).
pub fn service_user(
    named: Option<&str>,
    unit: Option<&ServiceUnit>,
) -> Result<ServiceUser, String> {
    if let Some(name) = named {
        return Ok(ServiceUser {
            account: Account::by_name(name)?,
            source: "named by --user".into(),
        });
    }
    if let Some((name, unit)) = unit
        .and_then(|unit| unit.last("User"))
        .filter(|(name, _)| !name.is_empty())
    {
        return Ok(ServiceUser {
            account: Account::by_name(name)
                .map_err(|e| format!("{e} (User= in {})", unit.display()))?,
            source: format!("the service's user, User= in {}", unit.display()),
        });
    }
    Ok(ServiceUser {
        account: Account::current(),
        source: "the user running check; no flarum-ws.service is installed, pass --user NAME to check for the account that will run the server".into(),
    })
}
