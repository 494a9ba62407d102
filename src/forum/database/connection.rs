//! Reaching the database server the way PHP does (MariaDB's `localhost`
//! through its socket), and sorting a failure into a cause the admin can
//! act on.

use std::path::Path;
use std::time::Duration;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{AnyConnection, Connection};

use super::Database;
use crate::forum::config_php::{DatabaseConfig, Driver, ForumConfig};
use crate::forum::{ConnectProblem, ForumError};

/// How long connecting to the database may take before giving up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Characters left as they are in URL user, password and path parts.
const URL_PART: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');
const URL_PATH: &AsciiSet = &URL_PART.remove(b'/');

fn encode(part: &str) -> String {
    utf8_percent_encode(part, URL_PART).to_string()
}

/// Where PHP's MySQL driver (mysqlnd) finds the server's socket when
/// config.php says `'host' => 'localhost'` and names no `unix_socket`:
/// Debian's default first, then other distributions'.
const MYSQL_SOCKETS: [&str; 4] = [
    "/run/mysqld/mysqld.sock",
    "/var/run/mysqld/mysqld.sock",
    "/var/lib/mysql/mysql.sock",
    "/tmp/mysql.sock",
];

/// The socket a MySQL/MariaDB connection uses: config.php's `unix_socket`,
/// else, for `localhost`, the server's socket as PHP finds it (PHP never
/// uses TCP for `localhost`, so a server listening on the socket only
/// serves the forum, and must serve flarum-ws too).
fn mysql_socket(config: &DatabaseConfig) -> Option<String> {
    if let Some(socket) = &config.unix_socket {
        return Some(socket.clone());
    }
    if config.host != "localhost" {
        return None;
    }
    MYSQL_SOCKETS
        .iter()
        .find(|path| Path::new(path).exists())
        .map(|path| (*path).to_owned())
}

/// The sqlx URL for `config`, and a description without the password.
fn connection_url(config: &DatabaseConfig) -> (String, String) {
    let user = encode(&config.username);
    let password = encode(config.password.expose());
    let credentials = if password.is_empty() {
        user
    } else {
        format!("{user}:{password}")
    };
    let name = encode(&config.database);
    match config.driver {
        Driver::MySql | Driver::MariaDb => {
            let port = config.port.unwrap_or(3306);
            match mysql_socket(config) {
                Some(socket) => (
                    format!(
                        "mysql://{credentials}@localhost/{name}?socket={}",
                        encode(&socket)
                    ),
                    format!(
                        "{} database `{}` on socket {socket} as user `{}`",
                        config.driver.name(),
                        config.database,
                        config.username
                    ),
                ),
                None => (
                    format!("mysql://{credentials}@{}:{port}/{name}", config.host),
                    format!(
                        "{} database `{}` at {}:{port} as user `{}`",
                        config.driver.name(),
                        config.database,
                        config.host,
                        config.username
                    ),
                ),
            }
        }
        Driver::Postgres => {
            let port = config.port.unwrap_or(5432);
            let mut params = vec![format!(
                "sslmode={}",
                encode(config.sslmode.as_deref().unwrap_or("prefer"))
            )];
            if let Some(search_path) = &config.search_path {
                params.push(format!(
                    "options={}",
                    encode(&format!("-c search_path={search_path}"))
                ));
            }
            let host = if config.host.starts_with('/') {
                params.push(format!("host={}", encode(&config.host)));
                "localhost".to_owned()
            } else {
                config.host.clone()
            };
            (
                format!(
                    "postgres://{credentials}@{host}:{port}/{name}?{}",
                    params.join("&")
                ),
                format!(
                    "PostgreSQL database `{}` at {}:{port} as user `{}`",
                    config.database, config.host, config.username
                ),
            )
        }
        Driver::Sqlite => (
            format!(
                "sqlite://{}?mode=rw",
                utf8_percent_encode(&config.database, URL_PATH)
            ),
            format!("SQLite database {}", config.database),
        ),
    }
}

/// `host:port` (or the socket) of the database server, for messages.
fn server_address(config: &DatabaseConfig) -> String {
    let socket = match config.driver {
        Driver::MySql | Driver::MariaDb => mysql_socket(config),
        _ => config.unix_socket.clone(),
    };
    match (socket, config.driver) {
        (Some(socket), _) => socket,
        (None, Driver::Sqlite) => config.database.clone(),
        (None, Driver::Postgres) => format!("{}:{}", config.host, config.port.unwrap_or(5432)),
        (None, _) => format!("{}:{}", config.host, config.port.unwrap_or(3306)),
    }
}

/// Whether the server's socket or port accepts a connection at all: when
/// it does but the driver got no answer, the server is hung, not hidden
/// behind a firewall.
async fn accepts_connections(config: &DatabaseConfig) -> bool {
    const PROBE: Duration = Duration::from_secs(2);
    let socket = match config.driver {
        Driver::MySql | Driver::MariaDb => mysql_socket(config),
        Driver::Postgres => None,
        Driver::Sqlite => return false,
    };
    match socket {
        Some(path) => tokio::time::timeout(PROBE, tokio::net::UnixStream::connect(path))
            .await
            .is_ok_and(|r| r.is_ok()),
        None => {
            let port = config.port.unwrap_or(if config.driver == Driver::Postgres {
                5432
            } else {
                3306
            });
            tokio::time::timeout(
                PROBE,
                tokio::net::TcpStream::connect((config.host.as_str(), port)),
            )
            .await
            .is_ok_and(|r| r.is_ok())
        }
    }
}

/// Sorts the driver's error into a cause the admin can act on.
fn connect_problem(config: &DatabaseConfig, error: sqlx::Error) -> ConnectProblem {
    let address = server_address(config);
    match &error {
        sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            ConnectProblem::Refused(address)
        }
        sqlx::Error::Io(io)
            if io.to_string().contains("lookup address")
                || io.to_string().contains("Name or service not known") =>
        {
            ConnectProblem::NoDns(config.host.clone())
        }
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            let message = db.message().to_owned();
            if config.driver == Driver::Sqlite {
                ConnectProblem::NoSqliteFile(format!("{}: {message}", config.database))
            } else if matches!(code.as_ref(), "28000" | "28P01" | "1045")
                || message.contains("Access denied")
                || message.contains("password authentication failed")
            {
                ConnectProblem::AccessDenied(message)
            } else if matches!(code.as_ref(), "3D000" | "1049" | "42000")
                && (message.contains("Unknown database") || message.contains("does not exist"))
            {
                ConnectProblem::UnknownDatabase(message)
            } else {
                ConnectProblem::Other(message)
            }
        }
        _ => ConnectProblem::Other(error.to_string()),
    }
}

impl Database {
    /// Opens one connection first, so that a refusal is reported at once
    /// with the driver's own reason (a pool would retry until its timeout
    /// and then only say that it timed out), then keeps a small pool.
    pub async fn connect(config: &ForumConfig) -> Result<Self, ForumError> {
        install_default_drivers();
        let (url, described) = connection_url(&config.database);
        let failed = |problem| ForumError::Connect {
            described: described.clone(),
            path: config.path.clone(),
            problem,
            unset: config.unset_variables.clone(),
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, AnyConnection::connect(&url)).await {
            Ok(Ok(first)) => {
                let _ = first.close().await;
            }
            Ok(Err(error)) => return Err(failed(connect_problem(&config.database, error))),
            Err(_) => {
                let address = server_address(&config.database);
                let seconds = CONNECT_TIMEOUT.as_secs();
                return Err(failed(if accepts_connections(&config.database).await {
                    ConnectProblem::Hung(address, seconds)
                } else {
                    ConnectProblem::NoAnswer(address, seconds)
                }));
            }
        }
        let pool = AnyPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(CONNECT_TIMEOUT)
            .connect_lazy(&url)
            .map_err(|error| failed(ConnectProblem::Other(error.to_string())))?;
        Ok(Self {
            pool,
            driver: config.database.driver,
            prefix: config.database.prefix.clone(),
            described,
        })
    }
}

#[cfg(test)]
#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn config(driver: Driver) -> DatabaseConfig {
        DatabaseConfig {
            driver,
            host: "127.0.0.1".into(),
            port: None,
            unix_socket: None,
            database: "flarum".into(),
            username: "fl@rum".into(),
            password: Secret::new("p@ss:w/rd"),
            prefix: String::new(),
            search_path: Some("forum".into()),
            sslmode: None,
        }
    }

    #[test]
    fn urls_escape_credentials_and_descriptions_hide_the_password() {
        let (url, described) = connection_url(&config(Driver::MySql));
        assert_eq!(
            url,
            "mysql://fl%40rum:p%40ss%3Aw%2Frd@127.0.0.1:3306/flarum"
        );
        assert!(!described.contains("p@ss"));
        let (url, _) = connection_url(&config(Driver::Postgres));
        assert!(url.starts_with(
            "postgres://fl%40rum:p%40ss%3Aw%2Frd@127.0.0.1:5432/flarum?sslmode=prefer&options="
        ));
        let mut sqlite = config(Driver::Sqlite);
        sqlite.database = "/srv/forum/db file.sqlite".into();
        assert_eq!(
            connection_url(&sqlite).0,
            "sqlite:///srv/forum/db%20file.sqlite?mode=rw"
        );
    }
}
