//! Running from a Flarum forum: `config.php` tells how to reach the forum's
//! database, and the database's settings table holds what the admin saved on
//! the websocket extension's settings page.
//!
//! ```text
//! config.php ─► ForumConfig (database, url, debug) ─► Database ─► settings rows ─► PartialSettings
//! ```

mod config_php;
mod database;
pub mod php_literal;
mod settings;

use std::path::{Path, PathBuf};

pub use config_php::{DatabaseConfig, Driver, ForumConfig, read_config_php};
pub use database::{Database, StatisticsRow};
pub use settings::{ForumSettings, settings_from_rows};

/// Why the forum could not be read; each message says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum ForumError {
    #[error(
        "no config.php in {0}: run flarum-ws from the forum's root directory or pass --root /path/to/forum"
    )]
    NoConfig(PathBuf),
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
         executable was found on PATH. Install php-cli, or run flarum-ws from another directory \
         with the settings given as FLARUM_WS_* variables or in a YAML file (--config)"
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
    #[error("{0}")]
    Database(String),
}

/// What the forum contributes: its configuration and the settings it holds.
#[derive(Debug, Clone)]
pub struct Forum {
    pub config: ForumConfig,
    pub settings: ForumSettings,
}

/// Reads config.php under `root` and the settings from the forum database.
/// Returns `None` when there is no config.php and `root` was not named
/// explicitly (flarum-ws then runs standalone).
pub async fn load_forum(root: &Path, explicit: bool) -> Result<Option<Forum>, ForumError> {
    let path = root.join("config.php");
    if !path.is_file() {
        return if explicit {
            Err(ForumError::NoConfig(root.to_owned()))
        } else {
            Ok(None)
        };
    }
    let config = read_config_php(&path)?;
    let database = Database::connect(&config).await?;
    let rows = database.read_settings().await?;
    let settings = settings_from_rows(rows, &config)?;
    database.close().await;
    Ok(Some(Forum { config, settings }))
}
