//! `config.php`: read as a literal when it is one, evaluated by PHP when it
//! computes values (`getenv()`, variables...), then checked for the database
//! block, `url` and `debug`.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use super::php_literal::{PhpError, parse_config};
use super::{ForumError, UnsetVariable};
use crate::config::Secret;

/// The database server kinds Flarum supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    MySql,
    MariaDb,
    Postgres,
    Sqlite,
}

impl Driver {
    pub fn name(self) -> &'static str {
        match self {
            Self::MySql => "MySQL",
            Self::MariaDb => "MariaDB",
            Self::Postgres => "PostgreSQL",
            Self::Sqlite => "SQLite",
        }
    }
}

/// The `database` block of config.php.
#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    pub driver: Driver,
    pub host: String,
    pub port: Option<u16>,
    pub unix_socket: Option<String>,
    /// Database name, or for SQLite the file (resolved against the forum root).
    pub database: String,
    pub username: String,
    pub password: Secret,
    /// Table prefix, glued on without a separator.
    pub prefix: String,
    pub search_path: Option<String>,
    pub sslmode: Option<String>,
}

/// What flarum-ws needs from config.php.
#[derive(Debug, Clone)]
pub struct ForumConfig {
    pub path: PathBuf,
    pub database: DatabaseConfig,
    /// The forum's public URL (`url`), if set.
    pub url: Option<String>,
    /// `debug`: turns on per-message logging, as in the old server.
    pub debug: bool,
    /// `getenv('NAME')` calls whose variable this process does not have.
    pub unset_variables: Vec<UnsetVariable>,
    /// The `websocket` array, where flarum/realtime (Flarum 2) reads its
    /// overrides; `Null` when absent.
    pub websocket: Value,
    /// Flarum 2's `queue.driver` (`sync` when absent; `database` keeps jobs
    /// in `queue_jobs` for a worker).
    pub queue_driver: Option<String>,
}

impl ForumConfig {
    /// The host name of the forum's `url`, e.g. `forum.example`.
    pub fn host(&self) -> Option<String> {
        self.url
            .as_deref()?
            .split("://")
            .nth(1)?
            .split(['/', ':'])
            .next()
            .filter(|host| !host.is_empty())
            .map(str::to_owned)
    }
}

/// PHP that evaluates config.php and prints it as JSON. Flarum 2.x setups
/// may call Laravel's `env()`, which plain PHP lacks; a minimal stand-in
/// reading the process environment is defined for them.
const EVALUATE_PHP: &str = r#"if (!function_exists('env')) { function env($k, $d = null) { $v = getenv($k); return $v === false ? $d : $v; } }
$c = require $argv[1];
echo json_encode($c);"#;

/// Reads and validates config.php.
pub fn read_config_php(path: &Path) -> Result<ForumConfig, ForumError> {
    let source = std::fs::read_to_string(path).map_err(|source| ForumError::Unreadable {
        path: path.to_owned(),
        source,
    })?;
    let value = match parse_config(&source) {
        Ok(value) => value,
        Err(PhpError::Syntax { line, message }) => {
            return Err(ForumError::Syntax {
                path: path.to_owned(),
                line,
                message,
            });
        }
        Err(PhpError::Dynamic { line, what }) => evaluate_with_php(path, line, &what)?,
    };
    let mut config = extract(path, &value)?;
    config.unset_variables = unset_variables(&source);
    Ok(config)
}

fn evaluate_with_php(path: &Path, line: usize, what: &str) -> Result<Value, ForumError> {
    let output = match Command::new("php")
        .arg("-r")
        .arg(EVALUATE_PHP)
        .arg(path)
        .output()
    {
        Ok(output) => output,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Err(ForumError::NeedsPhp {
                path: path.to_owned(),
                line,
                what: what.to_owned(),
            });
        }
        Err(error) => {
            return Err(ForumError::PhpFailed {
                path: path.to_owned(),
                message: format!("cannot run php: {error}"),
            });
        }
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let message = [stdout.trim(), stderr.trim()]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        return Err(ForumError::PhpFailed {
            path: path.to_owned(),
            message,
        });
    }
    tracing::debug!(
        "{} computes values (line {line}: {what}); evaluated it with php",
        path.display()
    );
    serde_json::from_str(&stdout).map_err(|_| ForumError::PhpFailed {
        path: path.to_owned(),
        message: "it did not return an array".into(),
    })
}

fn invalid(path: &Path, message: impl Into<String>) -> ForumError {
    ForumError::Invalid {
        path: path.to_owned(),
        message: message.into(),
    }
}

fn text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn truthy(value: Option<&Value>) -> bool {
    match value {
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_f64().is_some_and(|f| f != 0.0),
        Some(Value::String(s)) => !s.is_empty() && s != "0",
        _ => false,
    }
}

fn extract(path: &Path, config: &Value) -> Result<ForumConfig, ForumError> {
    let Some(database) = config.get("database").filter(|d| d.is_object()) else {
        return Err(invalid(
            path,
            "it has no `database` array; is this a Flarum config.php?",
        ));
    };
    let driver_name = text(database.get("driver")).unwrap_or_else(|| "mysql".into());
    let driver = match driver_name.as_str() {
        "mysql" => Driver::MySql,
        "mariadb" => Driver::MariaDb,
        "pgsql" => Driver::Postgres,
        "sqlite" => Driver::Sqlite,
        other => {
            return Err(invalid(
                path,
                format!(
                    "database driver {other:?} is not supported; Flarum uses mysql, mariadb, pgsql or sqlite"
                ),
            ));
        }
    };
    let port = match database.get("port") {
        None | Some(Value::Null) => None,
        Some(value) => {
            let port = text(Some(value))
                .and_then(|p| p.trim().parse::<u16>().ok())
                .ok_or_else(|| {
                    invalid(path, format!("database port {value} is not a port number"))
                })?;
            Some(port)
        }
    };
    let name = text(database.get("database")).unwrap_or_default();
    if name.is_empty() {
        return Err(invalid(
            path,
            "database.database (the database name or SQLite file) is empty",
        ));
    }
    let root = path.parent().unwrap_or(Path::new("."));
    let database_name =
        if driver == Driver::Sqlite && Path::new(&name).is_relative() && name != ":memory:" {
            root.join(&name).to_string_lossy().into_owned()
        } else {
            name
        };
    let prefix = text(database.get("prefix")).unwrap_or_default();
    if !prefix
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        return Err(invalid(
            path,
            format!("table prefix {prefix:?} may only hold letters, digits and _"),
        ));
    }
    Ok(ForumConfig {
        path: path.to_owned(),
        database: DatabaseConfig {
            driver,
            host: text(database.get("host")).unwrap_or_else(|| "localhost".into()),
            port,
            unix_socket: text(database.get("unix_socket")).filter(|s| !s.is_empty()),
            database: database_name,
            username: text(database.get("username")).unwrap_or_default(),
            password: Secret::new(text(database.get("password")).unwrap_or_default()),
            prefix,
            search_path: text(database.get("search_path")).filter(|s| !s.is_empty()),
            sslmode: text(database.get("sslmode")).filter(|s| !s.is_empty()),
        },
        url: text(config.get("url")).filter(|s| !s.is_empty()),
        debug: truthy(config.get("debug")),
        unset_variables: Vec::new(),
        websocket: config.get("websocket").cloned().unwrap_or(Value::Null),
        queue_driver: text(config.get("queue").and_then(|queue| queue.get("driver"))),
    })
}

/// The `getenv('NAME')`, `env('NAME')` and `$_SERVER['NAME']` reads of
/// `source` whose variable is not set in this process's environment (PHP,
/// started by flarum-ws, sees the same), with their line numbers.
pub fn unset_variables(source: &str) -> Vec<UnsetVariable> {
    let mut unset = Vec::new();
    for (index, line) in source.lines().enumerate() {
        for opening in ["env(", "$_SERVER["] {
            let mut rest = line;
            while let Some(at) = rest.find(opening) {
                let call = &rest[at + opening.len()..];
                let called = call.trim_start();
                rest = call;
                let Some(quote) = called.chars().next().filter(|c| *c == '\'' || *c == '"') else {
                    continue;
                };
                let Some(end) = called[1..].find(quote) else {
                    continue;
                };
                let name = &called[1..1 + end];
                if !name.is_empty() && std::env::var_os(name).is_none() {
                    unset.push(UnsetVariable {
                        line: index + 1,
                        name: name.to_owned(),
                    });
                }
            }
        }
    }
    unset
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn extracts_each_driver() {
        let path = Path::new("/forum/config.php");
        let mysql = extract(
            path,
            &json!({"debug": true, "url": "https://f.example", "database": {"driver": "mysql", "host": "db", "port": "3307", "database": "flarum", "username": "u", "password": "p", "prefix": null}}),
        )
        .unwrap();
        assert_eq!(mysql.database.driver, Driver::MySql);
        assert_eq!(mysql.database.port, Some(3307));
        assert_eq!(mysql.database.prefix, "");
        assert!(mysql.debug);

        let sqlite = extract(
            path,
            &json!({"database": {"driver": "sqlite", "database": "storage/forum.sqlite"}}),
        )
        .unwrap();
        assert_eq!(sqlite.database.database, "/forum/storage/forum.sqlite");

        let error = extract(
            path,
            &json!({"database": {"driver": "oracle", "database": "x"}}),
        )
        .unwrap_err();
        assert!(error.to_string().contains("oracle"));
        let error = extract(
            path,
            &json!({"database": {"driver": "mysql", "database": "x", "prefix": "a;drop"}}),
        )
        .unwrap_err();
        assert!(error.to_string().contains("prefix"));
    }
}
