//! Whose permissions matter: the account the service runs as, which is
//! rarely the one running `check` (root, usually). Named by `--user`, else
//! read from the installed unit's `User=` (drop-ins from `systemctl edit`
//! win), else the account running `check`.

use std::path::{Path, PathBuf};

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

/// The `User=` of `flarum-ws.service` under `directories`, and the file
/// that set it: the unit as systemd would load it (the first directory
/// holding it), then its drop-ins in order.
pub fn unit_user(directories: &[&str]) -> Option<(String, PathBuf)> {
    let unit = directories
        .iter()
        .map(|dir| Path::new(dir).join("flarum-ws.service"))
        .find(|path| path.is_file())?;
    let mut found = std::fs::read_to_string(&unit)
        .ok()
        .and_then(|text| user_in(&text))
        .map(|user| (user, unit.clone()));
    let mut drop_ins: Vec<PathBuf> = directories
        .iter()
        .filter_map(|dir| std::fs::read_dir(Path::new(dir).join("flarum-ws.service.d")).ok())
        .flatten()
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|e| e == "conf"))
        .collect();
    drop_ins.sort_by_key(|path| path.file_name().map(ToOwned::to_owned));
    for drop_in in drop_ins {
        if let Some(user) = std::fs::read_to_string(&drop_in)
            .ok()
            .and_then(|text| user_in(&text))
        {
            found = Some((user, drop_in));
        }
    }
    found
}

/// The account to judge file access for.
pub fn service_user(named: Option<&str>) -> Result<ServiceUser, String> {
    if let Some(name) = named {
        return Ok(ServiceUser {
            account: Account::by_name(name)?,
            source: "named by --user".into(),
        });
    }
    if let Some((name, unit)) = unit_user(&UNIT_DIRECTORIES) {
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
        assert_eq!(unit_user(&dirs).unwrap().0, "www-data");
        std::fs::write(
            dir.join("flarum-ws.service.d/override.conf"),
            "[Service]\nUser=flarum\n",
        )
        .unwrap();
        let (user, from) = unit_user(&dirs).unwrap();
        assert_eq!(user, "flarum");
        assert!(from.ends_with("override.conf"));
    }
}
