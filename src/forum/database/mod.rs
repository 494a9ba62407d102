//! The forum's database through sqlx's `Any` driver: one code path for
//! MySQL/MariaDB, PostgreSQL and SQLite, with the few SQL differences
//! (identifier quoting, placeholders, date arithmetic) kept here. Reaching
//! the server is in `connection`, what flarum/realtime's extras ask of the
//! forum (users, groups, permissions, discussions, tags) in `permissions`,
//! the statistics widget's table in `statistics`; the settings table, read
//! by every command, is here.

mod connection;
mod permissions;
mod queue;
mod statistics;

// Identifiers in the SQL of these files are the table prefix, checked to be
// [A-Za-z0-9_] when config.php is read; values are bound, never spliced.
use sqlx::{AnyPool, AssertSqlSafe, Row};

pub use permissions::DiscussionFacts;
pub use statistics::StatisticsRow;

use super::ForumError;
use super::config_php::Driver;

/// A connection pool to the forum database.
#[derive(Debug, Clone)]
pub struct Database {
    pool: AnyPool,
    driver: Driver,
    prefix: String,
    /// Where the database is, for messages (never the password).
    described: String,
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

/// Whether a database error says the table does not exist.
fn is_missing_table(error: &sqlx::Error) -> bool {
    let sqlx::Error::Database(db) = error else {
        return false;
    };
    matches!(db.code().as_deref(), Some("42S02" | "42P01" | "1146"))
        || db.message().contains("no such table")
}

impl Database {
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

    /// Closes the pool's connections (the forum database's server counts them).
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
}
