//! Keeps the websocket extension's admin dashboard widget alive: one row of
//! peak connections, websocket messages and API messages per interval in
//! `{prefix}websockets_statistics_entries`, rows older than ten days deleted.
//!
//! A database outage loses at most the row being written; serving never
//! depends on it.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::counters::Counters;
use crate::forum::{Database, StatisticsRow};

/// Writes a row of `counters` every `interval` until `shutdown`, for the
/// app `app_id` says (it may change on reload).
pub async fn run(
    database: Database,
    counters: Arc<Counters>,
    app_id: impl Fn() -> String,
    interval: Duration,
    shutdown: CancellationToken,
) {
    match database.has_statistics_table().await {
        Ok(true) => tracing::info!(
            "Writing statistics to the forum database every {} s",
            interval.as_secs()
        ),
        Ok(false) => {
            tracing::info!(
                "The forum has no websockets_statistics_entries table; not writing statistics"
            );
            return;
        }
        Err(error) => tracing::warn!("{error}; will try to write statistics anyway"),
    }
    counters.take_interval();
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    let mut failing = false;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let counts = counters.take_interval();
        // The extension skips intervals without any connection.
        if counts.peak_connections == 0 {
            continue;
        }
        let row = StatisticsRow {
            peak_connections: counts.peak_connections,
            websocket_messages: counts.websocket_messages,
            api_messages: counts.api_messages,
        };
        match database.write_statistics(&app_id(), row).await {
            Ok(()) if failing => {
                failing = false;
                tracing::info!("The forum database answers again; statistics rows resume");
            }
            Ok(()) => tracing::debug!("statistics row written: {row:?}"),
            Err(error) => {
                failing = true;
                tracing::warn!("{error}; this interval's statistics are lost, serving continues")
            }
        }
    }
}
