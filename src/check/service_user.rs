//! Whose permissions matter: the account the service runs as, which is
//! rarely the one running `check` (root, usually). Named by `--user`, else
//! read from the installed unit's `User=` (drop-ins from `systemctl edit`
//! win), else the account running `check`.

use std::path::PathBuf;

use crate::tls::access::Account;

/// Where systemd looks for units, most local first.
pub const UNIT_DIRECTORIES: [&str; 4] = [
    "/etc/systemd/system",
    "/usr/local/lib/systemd/system",
    "/usr/lib/systemd/system",
    "/lib/systemd/system",
];

/// The account whose access to files is checked, and why it is that one.
pub struct ServiceUser {
    pub account: Account,
    pub source: String,
}

/// The last `User=` in `text`'s `[Service]` section, if any.
fn user_in(text: &str) -> Option<String> {
    let mut in_service = false;
    let mut user = None;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_service = line == "[Service]";
        } else if in_service && let Some(value) = line.strip_prefix("User=") {
            user = Some(value.trim().to_owned()).filter(|v| !v.is_empty());
        }
    }
    user
}

/// The last `User=` of `files` (a unit as systemd would load it, then its
/// drop-ins in order) and the file that set it.
fn user_of(files: &[PathBuf]) -> Option<(String, PathBuf)> {
    files.iter().rev().find_map(|file| {
        let user = user_in(&std::fs::read_to_string(file).ok()?)?;
        Some((user, file.clone()))
    })
}

/// The account to judge file access for: `named`, else the `User=` of
/// `unit` (a unit and its drop-ins).
pub fn service_user(named: Option<&str>, unit: &[PathBuf]) -> Result<ServiceUser, String> {
    if let Some(name) = named {
        return Ok(ServiceUser {
            account: Account::by_name(name)?,
            source: "named by --user".into(),
        });
    }
    if let Some((name, unit)) = user_of(unit) {
        return Ok(ServiceUser {
            account: Account::by_name(&name)
                .map_err(|e| format!("{e} (User= in {})", unit.display()))?,
            source: format!("the service's user, User= in {}", unit.display()),
        });
    }
    Ok(ServiceUser {
        account: Account::current(),
        source: "the user running check; no flarum-ws.service is installed, pass --user NAME to check for the account that will run the server".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::super::unit_env::unit_files;
    use super::*;

    #[test]
    fn the_last_user_of_the_unit_and_its_drop_ins_wins() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("system");
        std::fs::create_dir_all(dir.join("flarum-ws.service.d")).unwrap();
        std::fs::write(
            dir.join("flarum-ws.service"),
            "[Unit]\nUser=nobody\n[Service]\nUser=www-data\nGroup=www-data\n",
        )
        .unwrap();
        let dirs = [dir.to_str().unwrap()];
        assert_eq!(
            user_of(&unit_files(&dirs, "flarum-ws.service")).unwrap().0,
            "www-data"
        );
        std::fs::write(
            dir.join("flarum-ws.service.d/override.conf"),
            "[Service]\nUser=flarum\n",
        )
        .unwrap();
        let (user, from) = user_of(&unit_files(&dirs, "flarum-ws.service")).unwrap();
        assert_eq!(user, "flarum");
        assert!(from.ends_with("override.conf"));
    }
}
