//! `flarum-ws serve`: resolve settings, bind, serve until SIGINT/SIGTERM.

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use super::{Exit, Failure, ServeArgs};
use crate::config::{self, PartialSettings};
use crate::{server, telemetry};

pub fn run(args: ServeArgs) -> Result<Exit, Failure> {
    let flags = PartialSettings {
        host: args.host,
        port: args.port,
        verbose: args.verbose.then_some(true),
        ..Default::default()
    };
    let cwd = std::env::current_dir()
        .context("cannot read the working directory")
        .map_err(Failure::user)?;
    let sources =
        config::load_sources(flags, args.config, &cwd, std::env::vars()).map_err(Failure::user)?;
    let resolved = config::resolve(sources).map_err(Failure::user)?;
    let settings = resolved.settings;
    telemetry::logging::init(settings.verbose);

    let runtime = tokio::runtime::Runtime::new()
        .context("cannot start the async runtime")
        .map_err(Failure::unexpected)?;
    runtime.block_on(async move {
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
        tokio::spawn(cancel_on_signal(shutdown.clone()));
        server::run(listener, settings, shutdown)
            .await
            .context("the server stopped unexpectedly")
            .map_err(Failure::unexpected)?;
        tracing::info!("Server stopped");
        Ok(Exit::Success)
    })
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
