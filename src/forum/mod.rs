//! Running from a Flarum forum: `config.php` tells how to reach the forum's
//! database, and the database's settings table holds what the admin saved on
//! the websocket extension's settings page.
//!
//! ```text
//! config.php ─► ForumConfig (database, url, debug) ─► Database ─► settings rows ─► PartialSettings
//! ```

mod config_php;
mod database;
pub mod halt;
mod identity;
pub mod php_literal;
mod realtime;
mod settings;
mod visibility;

use std::path::{Path, PathBuf};

pub use config_php::{DatabaseConfig, Driver, ForumConfig, read_config_php};
pub use database::{Database, StatisticsRow};
pub use identity::{Identities, Identity};
pub use realtime::{
    Extension, KYRNE, REALTIME, RealtimeClient, WEBSOCKET_KEYS, realtime_client,
    unknown_websocket_keys,
};
pub use settings::{ForumSettings, origin_of, settings_from_rows};
pub use visibility::{Actor, Visibility};

/// Why the forum could not be read; each message says what is wrong and
/// [`ForumError::fix`] what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum ForumError {
    #[error("no config.php in {}{}", .dir.display(), .named_by.as_ref().map(|by| format!(" (named by {by})")).unwrap_or_default())]
    NoConfig {
        dir: PathBuf,
        /// `--root` or `FLARUM_WS_ROOT` (and where it was set), if either.
        named_by: Option<String>,
    },
    #[error("cannot read {path}: {source}")]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: syntax error on line {line}: {message}")]
    Syntax {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error(
        "{path} line {line}: {what}. flarum-ws evaluates such a file with PHP, but no `php` \
         executable was found on PATH"
    )]
    NeedsPhp {
        path: PathBuf,
        line: usize,
        what: String,
    },
    #[error("{path}: PHP could not evaluate it: {message}")]
    PhpFailed { path: PathBuf, message: String },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    /// A value saved on the extension's settings page is unusable.
    #[error("setting {key} is {value:?}, expected {expected}")]
    BadSetting {
        key: String,
        value: String,
        expected: String,
    },
    #[error("cannot connect to the forum's {described} (from {path}): {problem}{unset}",
        unset = unset_variables(unset))]
    Connect {
        described: String,
        path: PathBuf,
        problem: ConnectProblem,
        /// `getenv()` calls in config.php whose variable is not set.
        unset: Vec<UnsetVariable>,
    },
    #[error("the {described} has no table `{table}`{}", found_tables(found))]
    MissingTable {
        described: String,
        table: String,
        /// Tables named like a settings table, to suggest the prefix.
        found: Vec<String>,
    },
    #[error("{0}")]
    Database(String),
    /// `extensions_enabled` names both realtime extensions, or neither.
    #[error("{0}")]
    Extensions(String),
}

/// A `getenv('NAME')` or `$_SERVER['NAME']` in config.php whose variable
/// is not set, so PHP gets nothing (an empty password, say).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsetVariable {
    pub line: usize,
    pub name: String,
}

fn unset_variables(unset: &[UnsetVariable]) -> String {
    unset
        .iter()
        .map(|u| {
            format!(
                ". config.php line {} reads {}, which is not set for flarum-ws",
                u.line, u.name
            )
        })
        .collect()
}

fn found_tables(found: &[String]) -> String {
    if found.is_empty() {
        String::new()
    } else {
        format!(" (it has {})", found.join(", "))
    }
}

/// Why the database could not be reached, from the driver's own error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectProblem {
    #[error("nothing listens at {0} (connection refused)")]
    Refused(String),
    #[error("DNS has no address for {0}")]
    NoDns(String),
    #[error("no answer from {0} within {1} s")]
    NoAnswer(String, u64),
    #[error("{0} accepted the connection but the database server did not answer within {1} s")]
    Hung(String, u64),
    #[error("the server refused the user and password: {0}")]
    AccessDenied(String),
    #[error("the database does not exist: {0}")]
    UnknownDatabase(String),
    #[error("the SQLite file cannot be opened: {0}")]
    NoSqliteFile(String),
    #[error("{0}")]
    Other(String),
}

impl ForumError {
    /// What the admin can do about it.
    pub fn fix(&self) -> String {
        match self {
            Self::NoConfig { dir, named_by } => {
                let parent = dir.parent().filter(|_| parent_is_forum(dir));
                let by_variable = named_by.as_deref().filter(|by| by.starts_with("FLARUM_WS_ROOT"));
                match (parent, by_variable) {
                    (Some(parent), Some(by)) => format!(
                        "{} is the forum's root (it holds config.php): set FLARUM_WS_ROOT={} where {by} is set (under systemd, /etc/default/flarum-ws), then restart flarum-ws",
                        parent.display(),
                        parent.display()
                    ),
                    (None, Some(by)) => format!(
                        "set FLARUM_WS_ROOT to the forum's root, the folder holding config.php, where {by} is set (under systemd, /etc/default/flarum-ws), then restart flarum-ws"
                    ),
                    (Some(parent), None) => format!(
                        "{} is the forum's root (it holds config.php): run flarum-ws there, or pass --root {}",
                        parent.display(),
                        parent.display()
                    ),
                    (None, None) => "run flarum-ws from the forum's root directory (where config.php is) or pass --root /path/to/forum".into(),
                }
            }
            Self::Unreadable { path, .. } => {
                let account = crate::access::Account::current();
                match crate::access::can_read(&account, path) {
                    Err(blocked) => format!(
                        "{}, and flarum-ws runs as {}: {}",
                        blocked.describe(&account),
                        account.name,
                        blocked.fix(&account)
                    ),
                    Ok(()) => format!(
                        "check that {} is a regular file the forum's PHP can read too",
                        path.display()
                    ),
                }
            }
            Self::Syntax { .. } => "fix config.php as described (php -l config.php shows the same)".into(),
            Self::NeedsPhp { .. } => "install php-cli, or run flarum-ws from another directory with the settings given as FLARUM_WS_* variables or in a YAML file (--config)".into(),
            Self::PhpFailed { .. } | Self::Invalid { .. } => "fix config.php as described".into(),
            Self::BadSetting { .. } => "fix the setting on the extension's settings page (admin panel, Extensions, Websocket)".into(),
            Self::Connect { problem, unset, .. } => {
                let mut fix = match problem {
                    ConnectProblem::Refused(address) if address.starts_with("localhost:3306") => "start the database server (systemctl start mariadb); PHP reaches 'localhost' through the server's socket, which was not found where PHP looks (/run/mysqld/mysqld.sock and the like): if it is elsewhere, name it in config.php's database block as 'unix_socket' => '/path/to/mysqld.sock' (mysql -e 'SELECT @@socket' prints it)".to_owned(),
                    ConnectProblem::Refused(_) => "start the database server (systemctl start mariadb, or postgresql), or fix host and port in config.php's database block".to_owned(),
                    ConnectProblem::NoDns(host) => format!("fix the host {host} in config.php's database block, or add a DNS record for it"),
                    ConnectProblem::NoAnswer(..) => "a firewall may drop the connection, or the host in config.php's database block is wrong".to_owned(),
                    ConnectProblem::Hung(..) => "the database server is hung or overloaded: see its log and its running queries (SHOW PROCESSLIST; or pg_stat_activity), and restart it if need be (systemctl restart mariadb, or postgresql); the forum itself cannot reach it either".to_owned(),
                    ConnectProblem::AccessDenied(_) => "fix username and password in config.php's database block (the forum itself uses the same)".to_owned(),
                    ConnectProblem::UnknownDatabase(_) => "fix the database name in config.php's database block".to_owned(),
                    ConnectProblem::NoSqliteFile(_) => "fix the database path in config.php's database block (relative paths are from the forum root), and let flarum-ws's user read the file and its folder".to_owned(),
                    ConnectProblem::Other(_) => "check the database block of config.php and that the database server is running".to_owned(),
                };
                if let Some(first) = unset.first() {
                    fix = format!(
                        "set {} for flarum-ws as for PHP (under systemd, in /etc/default/flarum-ws: {}=...), or write the value in config.php; then: {fix}",
                        unset.iter().map(|u| u.name.as_str()).collect::<Vec<_>>().join(", "),
                        first.name
                    );
                }
                fix
            }
            Self::MissingTable { found, .. } => {
                match found.iter().find_map(|t| t.strip_suffix("settings")) {
                    Some(prefix) => format!(
                        "set 'prefix' => '{prefix}' in config.php's database block (the forum's tables start with {prefix:?})"
                    ),
                    None => "check 'database' and 'prefix' in config.php's database block: this database holds no Flarum tables".into(),
                }
            }
            Self::Database(_) => "check the database server's log".into(),
            Self::Extensions(_) => "enable exactly one in the forum's admin panel (Extensions): Websocket by Kyrne on Flarum 1, Realtime on Flarum 2".into(),
        }
    }
}

/// What the forum contributes: its configuration and the settings it holds.
#[derive(Debug, Clone)]
pub struct Forum {
    pub config: ForumConfig,
    pub settings: ForumSettings,
}

/// Whether `dir` is inside a forum root (its `public/`, say): the parent
/// holds config.php. Running standalone there is a mistake, not a choice.
pub fn parent_is_forum(dir: &Path) -> bool {
    dir.parent()
        .is_some_and(|parent| parent.join("config.php").is_file())
}

/// config.php under `root`: `None` when there is none and `root` was not
/// named explicitly (flarum-ws then runs standalone), unless the parent
/// directory is a forum root (run from `public/`, say).
pub fn find_config_php(
    root: &Path,
    named_by: Option<&str>,
) -> Result<Option<ForumConfig>, ForumError> {
    let path = root.join("config.php");
    if !path.is_file() {
        return if named_by.is_some() || parent_is_forum(root) {
            Err(ForumError::NoConfig {
                dir: root.to_owned(),
                named_by: named_by.map(str::to_owned),
            })
        } else {
            Ok(None)
        };
    }
    read_config_php(&path).map(Some)
}

/// The forum's settings, read through `database`.
pub async fn read_forum_settings(
    database: &Database,
    config: &ForumConfig,
) -> Result<ForumSettings, ForumError> {
    let rows = database.read_settings().await?;
    settings_from_rows(rows, config)
}
