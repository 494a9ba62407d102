//! `flarum-ws serve`: resolve settings, bind, serve until SIGINT/SIGTERM;
//! SIGHUP re-reads every source and applies what can change live.

use std::sync::Arc;

use anyhow::{Context, anyhow};
use tokio_util::sync::CancellationToken;

use super::load::{Loaded, load};
use super::{Exit, Failure, ServeArgs, SourceArgs};
use crate::config::Settings;
use crate::forum::Database;
use crate::server::{self, ServerContext};
use crate::{statistics, telemetry};

pub fn run(args: ServeArgs) -> Result<Exit, Failure> {
    let runtime = tokio::runtime::Runtime::new()
        .context("cannot start the async runtime")
        .map_err(Failure::unexpected)?;
    runtime.block_on(serve(args.sources))
}

/// TLS arrives in a later version; serving plain HTTP to browsers that
/// expect wss would fail in a way admins cannot see, so refuse clearly.
fn refuse_unsupported_tls(settings: &Settings) -> Result<(), Failure> {
    match &settings.tls {
        None => Ok(()),
        Some(files) => Err(Failure::user(anyhow!(
            "a TLS certificate is configured ({}) and reverse-proxy mode is off, but this version of \
             flarum-ws cannot serve TLS yet. Turn on \"Reverse Proxy Support\" in the extension's \
             settings and let nginx terminate TLS (option 1 of the setup guide), or remove the \
             certificate settings",
            files.cert.display()
        ))),
    }
}

async fn serve(args: SourceArgs) -> Result<Exit, Failure> {
    let Loaded { resolved, forum } = load(&args).await?;
    let settings = resolved.settings;
    telemetry::logging::init(settings.verbose);
    refuse_unsupported_tls(&settings)?;
    if let Some(forum) = &forum {
        tracing::info!("Using the forum at {}", forum.config.path.display());
    }

    tracing::info!("Starting the WebSocket server on port {}...", settings.port);
    let listener = server::bind(&settings).await.map_err(Failure::user)?;
    let address = listener
        .local_addr()
        .context("cannot read the listening address")
        .map_err(Failure::unexpected)?;
    tracing::info!(
        "Listening on {address} for app id {} (websocket at /app/{}, HTTP API at /apps/{})",
        settings.app.id,
        settings.app.key,
        settings.app.id
    );

    let shutdown = CancellationToken::new();
    let statistics_interval = settings.statistics_interval;
    let write_statistics = settings.statistics;
    let ctx = Arc::new(ServerContext::new(settings, shutdown.clone()));
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    tokio::spawn(reload_on_hangup(args, ctx.clone()));
    if let (Some(forum), true) = (&forum, write_statistics) {
        match Database::connect(&forum.config).await {
            Ok(database) => {
                tokio::spawn(statistics::run(
                    database,
                    ctx.clone(),
                    statistics_interval,
                    shutdown.clone(),
                ));
            }
            Err(error) => tracing::warn!("not writing statistics: {error}"),
        }
    }

    server::serve(listener, ctx)
        .await
        .context("the server stopped unexpectedly")
        .map_err(Failure::unexpected)?;
    tracing::info!("Server stopped");
    Ok(Exit::Success)
}

/// Cancels `shutdown` on the first SIGINT or SIGTERM.
async fn cancel_on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut interrupt), Ok(mut terminate)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        tracing::error!("cannot listen for SIGINT/SIGTERM; stop the server with SIGKILL");
        return;
    };
    tokio::select! {
        _ = interrupt.recv() => tracing::info!("SIGINT received, shutting down"),
        _ = terminate.recv() => tracing::info!("SIGTERM received, shutting down"),
    }
    shutdown.cancel();
}

/// On SIGHUP, re-reads every source (config.php and the settings table
/// included) and applies the result; a failed reload keeps what runs.
async fn reload_on_hangup(args: SourceArgs, ctx: Arc<ServerContext>) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hangup) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP; settings can only change with a restart");
        return;
    };
    while hangup.recv().await.is_some() {
        tracing::info!("SIGHUP received, reloading settings");
        let fresh = match load(&args).await {
            Ok(loaded) => loaded.resolved.settings,
            Err(failure) => {
                tracing::error!(
                    "reload failed, keeping the current settings: {:#}",
                    failure.error
                );
                continue;
            }
        };
        let current = ctx.settings();
        for (what, changed) in [
            ("bind address", fresh.host != current.host),
            ("port", fresh.port != current.port),
            ("TLS mode", fresh.tls != current.tls),
        ] {
            if changed {
                tracing::warn!("the {what} changed; it takes effect only after a restart");
            }
        }
        ctx.apply(fresh);
        tracing::info!("Settings reloaded; open connections were kept");
    }
}
