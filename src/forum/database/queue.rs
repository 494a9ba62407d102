//! Flarum 2's database queue (`queue_jobs`): where the forum's pushes wait
//! when config.php sets `'queue' => ['driver' => 'database']` and nothing
//! processes them (the scheduler, `php flarum schedule:run` every minute,
//! or a `php flarum queue:work` worker). A realtime event pushed through
//! the queue reaches flarum-ws only once a worker takes it, so admins see
//! "realtime is broken" when the worker is.

use sqlx::{AssertSqlSafe, Row};

use super::{Database, QueryError, is_missing_table};

/// Jobs that have waited for a worker longer than asked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WaitingJobs {
    /// Every job waiting.
    pub all: u64,
    /// Those whose payload names a realtime class.
    pub realtime: u64,
    /// Seconds the oldest has waited.
    pub oldest_secs: u64,
}

/// The most waiting jobs read (each payload is looked at).
const MAX_JOBS_READ: i64 = 10_000;

impl Database {
    /// The jobs of `queue_jobs` available for more than `older_than_secs`
    /// and not taken by a worker; `None` when the table does not exist.
    pub async fn waiting_jobs(
        &self,
        now: i64,
        older_than_secs: i64,
    ) -> Result<Option<WaitingJobs>, QueryError> {
        let table = self.quote(&self.table("queue_jobs"));
        let sql = format!(
            "SELECT payload, available_at FROM {table} WHERE reserved_at IS NULL AND available_at < {} ORDER BY available_at LIMIT {MAX_JOBS_READ}",
            self.placeholder(1)
        );
        let rows = match sqlx::query(AssertSqlSafe(sql))
            .bind(now - older_than_secs)
            .fetch_all(&self.pool)
            .await
        {
            Ok(rows) => rows,
            Err(error) if is_missing_table(&error) => return Ok(None),
            Err(error) => return Err(self.failed(format!("read {table} of"))(error)),
        };
        let mut waiting = WaitingJobs::default();
        for row in rows {
            let payload: String = row.try_get(0).map_err(self.decode())?;
            let available: i64 = row.try_get(1).map_err(self.decode())?;
            waiting.all += 1;
            if payload.to_ascii_lowercase().contains("realtime") {
                waiting.realtime += 1;
            }
            let waited = u64::try_from(now - available).unwrap_or(0);
            waiting.oldest_secs = waiting.oldest_secs.max(waited);
        }
        Ok(Some(waiting))
    }
}
