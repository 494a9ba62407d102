//! The statistics widget's table (`websockets_statistics_entries`), which
//! the PHP extension's admin page reads.

use sqlx::AssertSqlSafe;

use super::{Database, QueryError, is_missing_table};
use crate::forum::config_php::Driver;

/// One statistics interval's counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatisticsRow {
    pub peak_connections: u64,
    pub websocket_messages: u64,
    pub api_messages: u64,
}

impl Database {
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
