//! Flarum 2's queue: with `'queue' => ['driver' => 'database']` in
//! config.php, the forum's pushes (realtime ones among them) wait in
//! `queue_jobs` until a worker takes them. No worker, no realtime: the
//! server is fine and the events never arrive. `check` looks for jobs that
//! have waited longer than a worker would let them.

use std::time::{SystemTime, UNIX_EPOCH};

use super::Finding;
use crate::forum::{Database, ForumConfig};

/// A job older than this has been missed by the scheduler: it runs every
/// minute when it runs at all, so a healthy forum's job may wait a minute
/// and the time its turn takes; three minutes is past any of that.
const WAITED_TOO_LONG_SECS: i64 = 180;

/// What to run, worded for the admin of the forum at `root`.
fn worker_fix(root: &str) -> String {
    format!(
        "run the forum's queue: Flarum's scheduler every minute (cron: * * * * * cd {root} && php flarum schedule:run), or a worker under systemd (a unit with ExecStart=/usr/bin/php {root}/flarum queue:work, User=www-data, Restart=always; see docs/flarum2.md)"
    )
}

/// The `queue` finding of a Flarum 2 forum.
pub async fn check_queue(database: &Database, config: &ForumConfig) -> Finding {
    let root = config
        .path
        .parent()
        .map_or_else(|| "/var/www/flarum".to_owned(), |p| p.display().to_string());
    match config.queue_driver.as_deref() {
        None | Some("sync") => {
            return Finding::pass(
                "queue",
                "the forum's queue is sync (config.php): pushes are sent during the request, no worker is needed",
            );
        }
        Some("database") => {}
        Some(other) => {
            return Finding::pass(
                "queue",
                format!(
                    "the forum's queue driver is {other}: check that its worker runs, as flarum-ws cannot see its waiting jobs"
                ),
            );
        }
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    match database.waiting_jobs(now, WAITED_TOO_LONG_SECS).await {
        Ok(None) => Finding::warn(
            "queue",
            "config.php sets the database queue, but the forum's database has no queue_jobs table",
            format!("run the forum's migrations (cd {root} && php flarum migrate)"),
        ),
        Ok(Some(waiting)) if waiting.realtime > 0 => Finding::fail(
            "queue",
            format!(
                "{} realtime job(s) have waited in queue_jobs for more than three minutes (the oldest {} s): no queue worker runs, so the forum's events sent through the queue never reach flarum-ws",
                waiting.realtime, waiting.oldest_secs
            ),
            worker_fix(&root),
        ),
        Ok(Some(waiting)) if waiting.all > 0 => Finding::warn(
            "queue",
            format!(
                "{} job(s) have waited in queue_jobs for more than three minutes (the oldest {} s): no queue worker seems to run, and realtime pushes sent through the queue would wait too",
                waiting.all, waiting.oldest_secs
            ),
            worker_fix(&root),
        ),
        Ok(Some(_)) => Finding::pass(
            "queue",
            "database queue: no job has waited in queue_jobs for more than three minutes (a worker takes them)",
        ),
        Err(error) => Finding::warn("queue", error.to_string(), "see the message"),
    }
}
