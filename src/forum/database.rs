//! The forum's database through sqlx's `Any` driver: one code path for
//! MySQL/MariaDB, PostgreSQL and SQLite, with the few SQL differences
//! (identifier quoting, placeholders, date arithmetic) kept here.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use sqlx::any::{AnyPoolOptions, install_default_drivers};
// Identifiers in the SQL below are the table prefix, checked to be
// [A-Za-z0-9_] when config.php is read; values are bound, never spliced.
use sqlx::{AnyConnection, AnyPool, AssertSqlSafe, Connection, Row};

use super::config_php::{DatabaseConfig, Driver, ForumConfig};
use super::{ConnectProblem, ForumError};

/// How long connecting to the database may take before giving up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Characters left as they are in URL user, password and path parts.
const URL_PART: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');
const URL_PATH: &AsciiSet = &URL_PART.remove(b'/');

/// One statistics interval's counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatisticsRow {
    pub peak_connections: u64,
    pub websocket_messages: u64,
    pub api_messages: u64,
}

/// What typing indicators need of a user.
#[derive(Debug, Clone)]
pub struct UserRow {
    pub display_name: String,
    pub preferences: Option<Vec<u8>>,
}

/// A connection pool to the forum database.
#[derive(Debug, Clone)]
pub struct Database {
    pool: AnyPool,
    driver: Driver,
    prefix: String,
    /// Where the database is, for messages (never the password).
    described: String,
}

fn encode(part: &str) -> String {
    utf8_percent_encode(part, URL_PART).to_string()
}

/// Why a query against the forum's database failed. The callers log it or
/// fail closed (show nothing); its text names the database and the cause.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The server refused or failed the query.
    #[error("cannot {doing} the {database}: {source}")]
    Failed {
        doing: String,
        database: String,
        #[source]
        source: sqlx::Error,
    },
    /// A cell did not hold what Flarum's schema puts there.
    #[error("an unexpected value in the {database}: {source}")]
    Decode {
        database: String,
        #[source]
        source: sqlx::Error,
    },
    /// An id beyond what the database's integers hold.
    #[error("{what} id {id} is out of range")]
    OutOfRange { what: &'static str, id: u64 },
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

/// Whether a database error says the table does not exist.
fn is_missing_table(error: &sqlx::Error) -> bool {
    let sqlx::Error::Database(db) = error else {
        return false;
    };
    matches!(db.code().as_deref(), Some("42S02" | "42P01" | "1146"))
        || db.message().contains("no such table")
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

    /// The error for a query that failed while trying to `doing`.
    fn failed(&self, doing: impl Into<String>) -> impl FnOnce(sqlx::Error) -> QueryError + '_ {
        let doing = doing.into();
        move |source| QueryError::Failed {
            doing,
            database: self.described.clone(),
            source,
        }
    }

    /// The error for a cell that did not decode.
    fn decode(&self) -> impl FnOnce(sqlx::Error) -> QueryError + '_ {
        move |source| QueryError::Decode {
            database: self.described.clone(),
            source,
        }
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    fn quote(&self, identifier: &str) -> String {
        match self.driver {
            Driver::MySql | Driver::MariaDb => format!("`{identifier}`"),
            Driver::Postgres | Driver::Sqlite => format!("\"{identifier}\""),
        }
    }

    fn placeholder(&self, n: usize) -> String {
        match self.driver {
            Driver::Postgres => format!("${n}"),
            _ => "?".into(),
        }
    }

    fn table(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// The rows of the settings table flarum-ws reads: the realtime
    /// extensions' (`kyrne-websocket.*`, `flarum-pusher.*`,
    /// `flarum-realtime.*`), `extensions_enabled` and `display_name_driver`.
    pub async fn read_settings(&self) -> Result<Vec<(String, Option<String>)>, ForumError> {
        let table = self.table("settings");
        let key = self.quote("key");
        let sql = format!(
            "SELECT {key}, {value} FROM {table_q} WHERE {key} LIKE 'kyrne-websocket.%' OR {key} LIKE 'flarum-pusher.%' \
             OR {key} LIKE 'flarum-realtime.%' OR {key} IN ('extensions_enabled', 'display_name_driver')",
            value = self.quote("value"),
            table_q = self.quote(&table),
        );
        let rows = match sqlx::query(AssertSqlSafe(sql)).fetch_all(&self.pool).await {
            Ok(rows) => rows,
            Err(error) if is_missing_table(&error) => {
                return Err(ForumError::MissingTable {
                    described: self.described.clone(),
                    table,
                    found: self.tables_like_settings().await,
                });
            }
            Err(error) => {
                return Err(ForumError::Database(format!(
                    "cannot read `{table}` from the {}: {error}",
                    self.described
                )));
            }
        };
        rows.iter()
            .map(|row| {
                let key: String = row.try_get(0)?;
                let value: Option<String> = row.try_get(1)?;
                Ok((key, value))
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(|error| {
                ForumError::Database(format!("cannot decode a row of `{table}`: {error}"))
            })
    }

    /// Tables whose name ends in `settings`: with a wrong prefix, the
    /// right one is what comes before it.
    async fn tables_like_settings(&self) -> Vec<String> {
        let sql = match self.driver {
            Driver::MySql | Driver::MariaDb => {
                "SELECT CAST(table_name AS CHAR) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name LIKE '%settings'"
            }
            Driver::Postgres => {
                "SELECT CAST(tablename AS TEXT) FROM pg_tables WHERE schemaname = ANY(current_schemas(false)) AND tablename LIKE '%settings'"
            }
            Driver::Sqlite => {
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE '%settings'"
            }
        };
        let Ok(rows) = sqlx::query(sql).fetch_all(&self.pool).await else {
            return Vec::new();
        };
        let mut names: Vec<String> = rows
            .iter()
            .filter_map(|row| row.try_get::<String, _>(0).ok())
            .filter(|name| name.ends_with("settings"))
            .collect();
        names.sort();
        names
    }

    /// The `extensions_enabled` setting as stored (a JSON list).
    pub async fn extensions_enabled(&self) -> Result<Option<String>, QueryError> {
        let table = self.quote(&self.table("settings"));
        let sql = format!(
            "SELECT {value} FROM {table} WHERE {key} = 'extensions_enabled'",
            value = self.quote("value"),
            key = self.quote("key"),
        );
        let row = sqlx::query(AssertSqlSafe(sql))
            .fetch_optional(&self.pool)
            .await
            .map_err(self.failed(format!("read {table} of")))?;
        match row {
            Some(row) => row.try_get::<Option<String>, _>(0).map_err(self.decode()),
            None => Ok(None),
        }
    }

    /// `expression` as text, in this database's dialect (integers of any
    /// width and sign read back the same way everywhere).
    fn as_text(&self, expression: &str) -> String {
        match self.driver {
            Driver::MySql | Driver::MariaDb => format!("CAST({expression} AS CHAR)"),
            Driver::Postgres | Driver::Sqlite => format!("CAST({expression} AS TEXT)"),
        }
    }

    /// A condition as '1' or '0'.
    fn flag(condition: &str) -> String {
        format!("CASE WHEN {condition} THEN '1' ELSE '0' END")
    }

    /// Runs `sql` with integer `binds` and returns every row as text cells.
    async fn text_rows(
        &self,
        sql: String,
        binds: &[i64],
    ) -> Result<Vec<Vec<Option<String>>>, QueryError> {
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for bind in binds {
            query = query.bind(*bind);
        }
        let rows = query
            .fetch_all(&self.pool)
            .await
            .map_err(self.failed("query"))?;
        rows.iter()
            .map(|row| {
                (0..row.len())
                    .map(|i| row.try_get::<Option<String>, _>(i).map_err(self.decode()))
                    .collect()
            })
            .collect()
    }

    /// The integer `column` of the rows of `table` whose `key` is `value`.
    async fn ids(
        &self,
        column: &str,
        table: &str,
        key: &str,
        value: i64,
    ) -> Result<Vec<u64>, QueryError> {
        let table = self.quote(&self.table(table));
        let sql = format!(
            "SELECT {} FROM {table} WHERE {key} = {}",
            self.as_text(column),
            self.placeholder(1)
        );
        Ok(self
            .text_rows(sql, &[value])
            .await?
            .into_iter()
            .filter_map(|row| row.first().cloned().flatten()?.parse().ok())
            .collect())
    }

    /// Whether user `id` confirmed their email, and their groups.
    pub async fn user_groups(&self, id: u64) -> Result<(bool, Vec<u64>), QueryError> {
        let id = i64::try_from(id).map_err(|_| QueryError::OutOfRange { what: "user", id })?;
        let users = self.quote(&self.table("users"));
        let confirmed = self
            .text_rows(
                format!(
                    "SELECT {} FROM {users} WHERE id = {}",
                    Self::flag("is_email_confirmed"),
                    self.placeholder(1)
                ),
                &[id],
            )
            .await?;
        let confirmed = confirmed
            .first()
            .and_then(|row| row.first().cloned().flatten())
            .is_some_and(|v| v == "1");
        let groups = self.ids("group_id", "group_user", "user_id", id).await?;
        Ok((confirmed, groups))
    }

    /// Whether one of `groups` holds `permission`.
    pub async fn groups_have_permission(
        &self,
        groups: &[u64],
        permission: &str,
    ) -> Result<bool, QueryError> {
        let table = self.quote(&self.table("group_permission"));
        let list: Vec<String> = groups.iter().map(u64::to_string).collect();
        if list.is_empty() {
            return Ok(false);
        }
        // The group ids are numbers read from the database; the permission
        // is bound.
        let sql = format!(
            "SELECT {} FROM {table} WHERE permission = {} AND group_id IN ({})",
            self.as_text("COUNT(*)"),
            self.placeholder(1),
            list.join(", ")
        );
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(permission.to_owned())
            .fetch_one(&self.pool)
            .await
            .map_err(self.failed("read permissions from"))?;
        let count: Option<String> = row.try_get(0).map_err(self.decode())?;
        Ok(count.is_some_and(|c| c != "0"))
    }

    /// A discussion's visibility facts: hidden, private, approved (when
    /// `approval`), and its tags with their parents (when `tags`).
    pub async fn discussion_facts(
        &self,
        id: u64,
        approval: bool,
        tags: bool,
    ) -> Result<Option<super::visibility::DiscussionFacts>, QueryError> {
        let id = i64::try_from(id).map_err(|_| QueryError::OutOfRange {
            what: "discussion",
            id,
        })?;
        let discussions = self.quote(&self.table("discussions"));
        let approved = if approval {
            Self::flag("is_approved")
        } else {
            "'1'".to_owned()
        };
        let rows = self
            .text_rows(
                format!(
                    "SELECT {}, {}, {approved} FROM {discussions} WHERE id = {}",
                    Self::flag("hidden_at IS NOT NULL"),
                    Self::flag("is_private"),
                    self.placeholder(1)
                ),
                &[id],
            )
            .await?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let yes = |i: usize| row.get(i).cloned().flatten().is_some_and(|v| v == "1");
        let (hidden, private, approved) = (yes(0), yes(1), yes(2));
        let mut own_tags = Vec::new();
        if tags {
            own_tags = self
                .ids("tag_id", "discussion_tag", "discussion_id", id)
                .await?;
        }
        let chains = self
            .tags_with_parents(&own_tags.iter().copied().collect())
            .await?;
        let mut all: Vec<(u64, bool)> = chains.values().flatten().copied().collect();
        all.sort_unstable();
        all.dedup();
        if own_tags.iter().any(|t| !chains.contains_key(t)) {
            // A tag row that cannot be read proves nothing: treat as restricted.
            all.push((u64::MAX, true));
        }
        Ok(Some(super::visibility::DiscussionFacts {
            hidden,
            private,
            approved,
            tags: all,
            own_tags,
        }))
    }

    /// Each tag of `ids` with its parent chain: id to [(id, restricted),
    /// (parent, restricted)...].
    pub async fn tags_with_parents(
        &self,
        ids: &std::collections::BTreeSet<u64>,
    ) -> Result<HashMap<u64, Vec<(u64, bool)>>, QueryError> {
        let mut known: HashMap<u64, (bool, Option<u64>)> = HashMap::new();
        let mut wanted: Vec<u64> = ids.iter().copied().collect();
        let tags = self.quote(&self.table("tags"));
        // Tags nest two levels in Flarum; a few rounds cover any chain.
        for _ in 0..4 {
            wanted.retain(|id| !known.contains_key(id));
            if wanted.is_empty() {
                break;
            }
            let list: Vec<String> = wanted.iter().map(u64::to_string).collect();
            let rows = self
                .text_rows(
                    format!(
                        "SELECT {}, {}, {} FROM {tags} WHERE id IN ({})",
                        self.as_text("id"),
                        Self::flag("is_restricted"),
                        self.as_text("parent_id"),
                        list.join(", ")
                    ),
                    &[],
                )
                .await?;
            let mut parents = Vec::new();
            for row in rows {
                let cell = |i: usize| row.get(i).cloned().flatten();
                let Some(id) = cell(0).and_then(|v| v.parse().ok()) else {
                    continue;
                };
                let parent = cell(2).and_then(|v| v.parse::<u64>().ok());
                parents.extend(parent);
                known.insert(id, (cell(1).is_some_and(|v| v == "1"), parent));
            }
            wanted = parents;
        }
        let mut chains = HashMap::new();
        for id in ids {
            let mut chain = Vec::new();
            let mut next = Some(*id);
            while let Some(current) = next.take() {
                let Some((restricted, parent)) = known.get(&current) else {
                    // A parent that cannot be read: unprovable.
                    chain.push((current, true));
                    break;
                };
                chain.push((current, *restricted));
                next = parent.filter(|p| !chain.iter().any(|(c, _)| c == p));
            }
            if known.contains_key(id) {
                chains.insert(*id, chain);
            }
        }
        Ok(chains)
    }

    /// A user's display name (the username, or the nickname when
    /// `nickname` is set and the user has one) and raw preferences.
    pub async fn user_identity(
        &self,
        id: u64,
        nickname: bool,
    ) -> Result<Option<UserRow>, QueryError> {
        let users = self.quote(&self.table("users"));
        let nickname_column = if nickname { ", nickname" } else { "" };
        let sql = format!(
            "SELECT username, preferences{nickname_column} FROM {users} WHERE id = {}",
            self.placeholder(1)
        );
        let id = i64::try_from(id).map_err(|_| QueryError::OutOfRange { what: "user", id })?;
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(self.failed("read the users table of"))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let username: String = row.try_get(0).map_err(self.decode())?;
        let preferences: Option<Vec<u8>> = row
            .try_get::<Option<Vec<u8>>, _>(1)
            .or_else(|_| {
                row.try_get::<Option<String>, _>(1)
                    .map(|s| s.map(String::into_bytes))
            })
            .map_err(self.decode())?;
        let nickname: Option<String> = if nickname {
            row.try_get::<Option<String>, _>(2).map_err(self.decode())?
        } else {
            None
        };
        Ok(Some(UserRow {
            display_name: nickname
                .filter(|n| !n.trim().is_empty())
                .unwrap_or(username),
            preferences,
        }))
    }

    fn statistics_table(&self) -> String {
        self.quote(&self.table("websockets_statistics_entries"))
    }

    /// Whether the extension's statistics table exists.
    pub async fn has_statistics_table(&self) -> Result<bool, QueryError> {
        let sql = format!("SELECT 1 FROM {} WHERE 1 = 0", self.statistics_table());
        match sqlx::query(AssertSqlSafe(sql)).fetch_all(&self.pool).await {
            Ok(_) => Ok(true),
            Err(error) if is_missing_table(&error) => Ok(false),
            Err(error) => Err(self.failed("reach")(error)),
        }
    }

    /// Inserts one statistics row and deletes rows older than ten days.
    pub async fn write_statistics(
        &self,
        app_id: &str,
        row: StatisticsRow,
    ) -> Result<(), QueryError> {
        let table = self.statistics_table();
        let insert = format!(
            "INSERT INTO {table} (app_id, peak_connection_count, websocket_message_count, api_message_count, created_at, updated_at) \
             VALUES ({}, {}, {}, {}, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
            self.placeholder(1),
            self.placeholder(2),
            self.placeholder(3),
            self.placeholder(4),
        );
        let clamp = |n: u64| i64::try_from(n.min(i32::MAX as u64)).unwrap_or(i64::from(i32::MAX));
        sqlx::query(AssertSqlSafe(insert))
            .bind(app_id.to_owned())
            .bind(clamp(row.peak_connections))
            .bind(clamp(row.websocket_messages))
            .bind(clamp(row.api_messages))
            .execute(&self.pool)
            .await
            .map_err(self.failed("write statistics to"))?;
        let cutoff = match self.driver {
            Driver::MySql | Driver::MariaDb => "NOW() - INTERVAL 10 DAY",
            Driver::Postgres => "NOW() - INTERVAL '10 days'",
            Driver::Sqlite => "datetime('now', '-10 days')",
        };
        let delete = format!("DELETE FROM {table} WHERE created_at < {cutoff}");
        sqlx::query(AssertSqlSafe(delete))
            .execute(&self.pool)
            .await
            .map_err(self.failed("delete old statistics from"))?;
        Ok(())
    }
}

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
