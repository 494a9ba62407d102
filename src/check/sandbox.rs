//! What the unit's sandbox hides from the service. The shipped unit runs
//! flarum-ws with `PrivateTmp=yes` (its own empty /tmp), `ProtectHome=yes`
//! (no /home, /root or /run/user) and `ProtectSystem=strict` (everything
//! read-only but `ReadWritePaths=`). `check`, run from a shell, sees the
//! forum either way; the service would find no config.php, or a SQLite
//! database it may not write (SQLite writes its journal beside the file,
//! and flarum-ws writes the statistics rows).

use std::path::{Path, PathBuf};

use super::Finding;
use super::unit::ServiceUnit;
use crate::forum::{Driver, ForumConfig};

/// systemd's true for a boolean setting.
fn is_on(value: &str) -> bool {
    matches!(value, "yes" | "true" | "on" | "1")
}

/// The folders a sandbox setting hides, or `None` when it hides nothing.
pub(super) fn hidden_by(key: &str, value: &str) -> Option<&'static [&'static str]> {
    match key {
        "PrivateTmp" if is_on(value) => Some(&["/tmp", "/var/tmp"]),
        "ProtectHome" if is_on(value) || value == "tmpfs" => Some(&["/home", "/root", "/run/user"]),
        _ => None,
    }
}

/// Whether the sandbox hides the forum root from the service.
pub fn check_hidden_root(config: &ForumConfig, unit: Option<&ServiceUnit>) -> Option<Finding> {
    let unit = unit?;
    let root = config.path.parent().unwrap_or(Path::new("/"));
    for key in ["PrivateTmp", "ProtectHome"] {
        let Some((value, file)) = unit.last(key) else {
            continue;
        };
        let Some(folder) = hidden_by(key, value)
            .and_then(|folders| folders.iter().find(|folder| root.starts_with(folder)))
        else {
            continue;
        };
        let instead = if key == "PrivateTmp" {
            format!(
                "move the forum out of {folder} (to /var/www/flarum, say), or systemctl edit flarum-ws, then [Service] PrivateTmp=no"
            )
        } else {
            format!(
                "systemctl edit flarum-ws, then [Service] ProtectHome=read-only{}",
                if config.database.driver == Driver::Sqlite {
                    format!(" and ReadWritePaths={}", database_folder(config).display())
                } else {
                    String::new()
                }
            )
        };
        return Some(Finding::fail(
            "sandbox",
            format!(
                "the forum root {} is under {folder}, which the service does not see ({key}={value} in {}): it would find no config.php",
                root.display(),
                file.display()
            ),
            instead,
        ));
    }
    None
}

fn database_folder(config: &ForumConfig) -> PathBuf {
    Path::new(&config.database.database)
        .parent()
        .unwrap_or(Path::new("/"))
        .to_owned()
}

/// A SQLite forum under `ProtectSystem=strict` needs its database's folder
/// in `ReadWritePaths=`.
pub fn check_sqlite_writable(config: &ForumConfig, unit: Option<&ServiceUnit>) -> Option<Finding> {
    let unit = unit?;
    if config.database.driver != Driver::Sqlite {
        return None;
    }
    let (protect, file) = unit.last("ProtectSystem")?;
    if protect != "strict" {
        return None;
    }
    let folder = database_folder(config);
    let writable = unit.values("ReadWritePaths").any(|(paths, _)| {
        paths
            .split_whitespace()
            .map(|path| path.trim_start_matches(['-', '+']))
            .any(|path| folder.starts_with(path))
    });
    if writable {
        return None;
    }
    Some(Finding::fail(
        "sandbox",
        format!(
            "the SQLite database {} is in {}, which the service may not write (ProtectSystem=strict in {}): SQLite writes its journal beside the file",
            config.database.database,
            folder.display(),
            file.display()
        ),
        format!(
            "systemctl edit flarum-ws, then [Service] ReadWritePaths={}",
            folder.display()
        ),
    ))
}

/// The service, run by systemd, found no config.php in `root` where the
/// admin's shell sees one: its sandbox hides the folder. Which setting does
/// is named from the properties systemd reported (`Key=value`).
pub fn hidden_from_service(root: &Path, properties: &[String]) -> Finding {
    let culprit = properties.iter().find_map(|property| {
        let (key, value) = property.split_once('=')?;
        let folder = hidden_by(key, value)?
            .iter()
            .find(|folder| root.starts_with(folder))?;
        Some((key, value, *folder))
    });
    let (why, fix) = match culprit {
        Some(("PrivateTmp", value, folder)) => (
            format!("{folder} is the service's own (PrivateTmp={value})"),
            format!(
                "move the forum out of {folder} (to /var/www/flarum, say), or systemctl edit flarum-ws, then [Service] PrivateTmp=no"
            ),
        ),
        Some((key, value, folder)) => (
            format!("the service does not see {folder} ({key}={value})"),
            "systemctl edit flarum-ws, then [Service] ProtectHome=read-only".to_owned(),
        ),
        None => (
            "its sandbox hides the folder".to_owned(),
            "see InaccessiblePaths=, TemporaryFileSystem= and RootDirectory= in systemctl cat flarum-ws".to_owned(),
        ),
    };
    Finding::fail(
        "sandbox",
        format!(
            "the forum root {} holds config.php, but flarum-ws.service finds none there: {why}",
            root.display()
        ),
        fix,
    )
}

/// Whether this process may write a SQLite forum's database folder, asked
/// of the kernel (`access(2)`): run as the service, inside its sandbox, the
/// answer is the service's own (`EROFS` under `ProtectSystem=strict`
/// without `ReadWritePaths=`, `EACCES` for the folder's owner and mode).
pub fn check_sqlite_writable_here(config: &ForumConfig) -> Option<Finding> {
    if config.database.driver != Driver::Sqlite {
        return None;
    }
    let folder = database_folder(config);
    let error = nix::unistd::access(&folder, nix::unistd::AccessFlags::W_OK).err()?;
    let fix = if error == nix::errno::Errno::EROFS {
        format!(
            "the service's sandbox keeps it read-only: systemctl edit flarum-ws, then [Service] ReadWritePaths={}",
            folder.display()
        )
    } else {
        format!(
            "let the service's user write it: chown {} to that user (or its group, with g+w)",
            folder.display()
        )
    };
    Some(Finding::fail(
        "sandbox",
        format!(
            "the SQLite database {} is in {}, which the service may not write ({}): SQLite writes its journal beside the file",
            config.database.database,
            folder.display(),
            error.desc()
        ),
        fix,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sandbox_hides_tmp_and_home_as_systemd_does() {
        assert_eq!(
            hidden_by("PrivateTmp", "yes"),
            Some(&["/tmp", "/var/tmp"][..])
        );
        assert_eq!(hidden_by("PrivateTmp", "no"), None);
        assert!(hidden_by("ProtectHome", "true").is_some());
        assert!(hidden_by("ProtectHome", "tmpfs").is_some());
        assert_eq!(hidden_by("ProtectHome", "read-only"), None);
    }
}
