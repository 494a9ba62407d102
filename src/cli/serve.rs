//! `flarum-ws serve`: resolve settings, bind, serve until SIGINT/SIGTERM;
//! SIGHUP re-reads every source (and the certificate) and applies what can
//! change live.

use std::sync::Arc;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use super::load::{Loaded, load};
use super::reload::{Reloader, follow_config_php, follow_the_forum, reload_on_hangup};
use super::{Exit, Failure, ServeArgs, SourceArgs};
use crate::cluster::{self, Cluster};
use crate::forum::{Database, Extension, Forum};
use crate::server::{self, ServerContext, activation};
use crate::telemetry::systemd;
use crate::telemetry::{self, statistics};
use crate::tls::{self, CertStore};
use crate::webhooks::Webhooks;

pub fn run(args: ServeArgs) -> Result<Exit, Failure> {
    let runtime = tokio::runtime::Runtime::new()
        .context("cannot start the async runtime")
        .map_err(Failure::unexpected)?;
    runtime.block_on(serve(args.sources))
}

async fn serve(args: SourceArgs) -> Result<Exit, Failure> {
    let Loaded { resolved, forum } = load(&args).await?;
    let settings = resolved.settings.clone();
    telemetry::logging::init(settings.verbose, settings.log_format);
    raise_open_file_limit();
    // Load the certificate before binding: a broken pair is a startup error.
    let certificates = match &settings.tls {
        Some(files) => {
            let pair = tls::load_certified_key(files)?;
            tracing::info!("Serving TLS with the certificate {}", files.cert.display());
            tls::log_concerns(&files.cert, &pair);
            Some((Arc::new(CertStore::new(pair.certified)), files.clone()))
        }
        None => None,
    };
    if let Some(forum) = &forum {
        tracing::info!("Using the forum at {}", forum.config.path.display());
    }

    tracing::info!("Starting the WebSocket server on port {}...", settings.port);
    let port_source = resolved.provenance.get("port").map_or_else(
        || "the default".to_owned(),
        |source| source.place_of("port"),
    );
    let inherited = activation::inherited_listener()
        .context("systemd passed a listening socket flarum-ws cannot use (ListenStream= must be a TCP address:port)")
        .map_err(Failure::user)?;
    let activated = inherited.is_some();
    let mut taken = None;
    let listener = match inherited {
        Some(listener) => tokio::net::TcpListener::from_std(listener)
            .context("cannot use the socket systemd passed")
            .map_err(Failure::unexpected)?,
        None => match server::bind(&settings).await {
            Ok(listener) => listener,
            Err(error) => {
                let Some((listener, from)) = take_over_same_app(&settings, &error).await else {
                    return Err(Failure::user(anyhow::anyhow!(
                        "{error}\n  fix: {}",
                        error.fix(&port_source)
                    )));
                };
                taken = Some(from);
                tokio::net::TcpListener::from_std(listener)
                    .context("cannot use the socket taken over")
                    .map_err(Failure::unexpected)?
            }
        },
    };
    let address = listener
        .local_addr()
        .context("cannot read the listening address")
        .map_err(Failure::unexpected)?;
    if activated {
        tracing::info!(
            "Using the listening socket systemd holds ({address}, flarum-ws-listen.socket): restarts and upgrades keep it open"
        );
        if let Some(warning) = activation::mismatch(address, &settings.host, settings.port) {
            tracing::warn!("{warning}");
        }
    }

    let shutdown = CancellationToken::new();
    let statistics_interval = settings.statistics_interval;
    let write_statistics = settings.statistics;
    let mut ctx = ServerContext::new(settings, shutdown.clone());
    let mut store = None;
    if let Some((certs, files)) = certificates {
        ctx = ctx.with_tls(tls::acceptor(certs.clone()));
        tokio::spawn(tls::watch_files(certs.clone(), files, shutdown.clone()));
        store = Some(certs);
    }
    if let Some(config) = crate::server::cluster_config(&ctx.settings()) {
        cluster::check_target(&config).map_err(|e| Failure::user(anyhow::anyhow!(e)))?;
        let cluster = Cluster::start(config, ctx.hub.clone(), shutdown.clone());
        ctx = ctx.with_cluster(cluster);
    }
    let webhooks = Webhooks::start(
        &ctx.settings().webhooks,
        &ctx.settings().app,
        &ctx.hub,
        ctx.cluster.clone(),
        shutdown.clone(),
    );
    let ctx = Arc::new(ctx.with_webhooks(webhooks));
    ctx.record_sources(&resolved);
    if let Some(address) = ctx.settings().metrics_listen {
        let metrics_listener = tokio::net::TcpListener::bind(address)
            .await
            .with_context(|| {
                format!("cannot open the metrics listener on {address} (metrics_listen)")
            })
            .map_err(Failure::user)?;
        tracing::info!("Serving /metrics, /up and /ready without a token on http://{address}");
        tokio::spawn(server::serve_private_listener(
            metrics_listener,
            ctx.clone(),
        ));
    }
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    tokio::spawn(systemd::watchdog(shutdown.clone()));
    tokio::spawn(report_status(ctx.clone()));
    let reloader = Reloader {
        args,
        ctx: ctx.clone(),
        certificates: store,
        serving: Arc::new(std::sync::Mutex::new(resolved)),
    };
    tokio::spawn(reload_on_hangup(reloader.clone()));
    reloader.serve_typing(forum.as_ref()).await;
    // Said once every listener is open, so whoever waits for this line (an
    // admin, a test) finds the metrics listener up too.
    let app = &ctx.settings().app;
    tracing::info!(
        "Listening on {address} for app id {} (websocket at /app/{}, HTTP API at /apps/{})",
        app.id,
        app.key,
        app.id
    );
    announce_admin_pages(&ctx, address);
    systemd::ready(&format!("listening on {address}"));
    tokio::spawn(server::sweep_index_typing(ctx.clone()));
    if let Some(forum) = &forum {
        start_forum_tasks(forum, &reloader, write_statistics, statistics_interval).await;
    }
    server::handover::offer(&listener, ctx.clone());
    if let Some(from) = taken {
        tracing::info!(
            "Took over the listening socket ({address}) from the flarum-ws serving this app: it now closes its connections with 4200, and they reconnect here"
        );
        ctx.telemetry.mark(
            "handover",
            "Took over the listening socket from the previous process",
        );
        from.accepting(ctx.clone());
    }
    let ctx_for_exit = ctx.clone();
    server::serve(listener, ctx)
        .await
        .context("the server stopped unexpectedly")
        .map_err(Failure::unexpected)?;
    tracing::info!("Server stopped");
    if ctx_for_exit.restart_requested() {
        return Ok(Exit::Restart);
    }
    Ok(Exit::Success)
}

/// The port is taken: when a flarum-ws serving the same app holds it, its
/// listening socket is asked for (`server::handover`), so that this process
/// serves in its place without refusing a connection.
async fn take_over_same_app(
    settings: &crate::config::Settings,
    error: &server::BindError,
) -> Option<(std::net::TcpListener, server::handover::Taken)> {
    if !error.address_in_use() {
        return None;
    }
    let target = crate::probe::Target {
        address: crate::probe::local_address(&settings.host),
        port: settings.port,
        tls: settings.tls.is_some(),
        server_name: "localhost".into(),
        insecure: true,
    };
    let (status, body) = crate::probe::request(&target, "GET", "/about", String::new())
        .await
        .ok()?;
    let about: serde_json::Value = serde_json::from_str(&body).ok()?;
    let same = status == 200
        && about["app_id"].as_str() == Some(settings.app.id.as_str())
        && about["key"].as_str() == Some(settings.app.key.as_str());
    if !same {
        return None;
    }
    let server::BindError::Io { address, .. } = error else {
        return None;
    };
    let listening = *address;
    tokio::task::spawn_blocking(move || server::handover::take_over(listening))
        .await
        .ok()
        .flatten()
}

/// What a forum adds to serving: for Flarum 2, following its restart
/// requests; for Flarum 1, the statistics rows of the extension's widget.
async fn start_forum_tasks(
    forum: &Forum,
    reloader: &Reloader,
    write_statistics: bool,
    statistics_interval: std::time::Duration,
) {
    let ctx = &reloader.ctx;
    let shutdown = ctx.shutdown.clone();
    if forum.settings.extension == Extension::Realtime {
        tracing::info!(
            "Serving a Flarum 2 forum ({}): settings from config.php's 'websocket' array and the daemon's defaults; no statistics table is written",
            Extension::Realtime.name()
        );
        match Database::connect(&forum.config).await {
            Ok(database) => {
                let root = forum
                    .config
                    .path
                    .parent()
                    .map(std::path::Path::to_path_buf)
                    .unwrap_or_default();
                let watch = Arc::new(crate::server::secret_rotation::SecretWatch::default());
                let _ = ctx.secret_watch.set(watch.clone());
                tokio::spawn(follow_config_php(reloader.clone(), root.clone(), watch));
                tokio::spawn(follow_the_forum(
                    reloader.clone(),
                    database,
                    root,
                    forum.settings.extensions_enabled.clone(),
                ));
            }
            Err(error) => tracing::warn!(
                "not following the forum's restart requests: cannot open its database: {error}"
            ),
        }
    }
    if forum.settings.extension == Extension::Kyrne && write_statistics {
        match Database::connect(&forum.config).await {
            Ok(database) => {
                let settings_of = ctx.clone();
                tokio::spawn(statistics::run(
                    database,
                    ctx.telemetry.counters.clone(),
                    move || settings_of.settings().app.id.clone(),
                    statistics_interval,
                    shutdown.clone(),
                ));
            }
            Err(error) => tracing::warn!("not writing statistics: {error}"),
        }
    }
}

/// Every connection is a file descriptor; the usual soft limit of 1024 would
/// cap a forum at about a thousand open tabs. Raise it to the hard limit
/// (systemd's LimitNOFILE sets that).
fn raise_open_file_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::debug!("open files limit: {limit}"),
        Err(error) => tracing::warn!("cannot raise the open files limit: {error}"),
    }
}

/// Stops the server on SIGINT or SIGTERM. The handlers are installed
/// before the server says it listens (so a signal sent at once is not the
/// default action, which would kill it); the waiting runs as a task.
fn cancel_on_signal(shutdown: CancellationToken) -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let signals = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    );
    async move {
        let (Ok(mut interrupt), Ok(mut terminate)) = signals else {
            tracing::error!("cannot listen for SIGINT/SIGTERM; stop the server with SIGKILL");
            return;
        };
        let name = tokio::select! {
            _ = interrupt.recv() => "SIGINT",
            _ = terminate.recv() => "SIGTERM",
        };
        // Stopping first: nothing that follows (a log line, a message to
        // systemd) can keep the server from it.
        shutdown.cancel();
        systemd::stopping();
        tracing::info!("{name} received, shutting down");
    }
}

/// Says where the dashboard is; a made-up token is shown this once.
fn announce_admin_pages(ctx: &ServerContext, address: std::net::SocketAddr) {
    let scheme = if ctx.tls.is_some() { "https" } else { "http" };
    let host = match (address.ip().is_unspecified(), &ctx.settings().app_host) {
        (false, _) => address.ip().to_string(),
        (true, Some(app_host)) => app_host.clone(),
        (true, None) => "localhost".to_owned(),
    };
    let port = address.port();
    if ctx.admin_token_generated() {
        tracing::info!(
            "Dashboard: {scheme}://{host}:{port}/dashboard?token={} (a new token at every start; set admin_token to keep one)",
            ctx.admin_token().expose()
        );
    } else {
        tracing::info!("Dashboard: {scheme}://{host}:{port}/dashboard (sign in with admin_token)");
    }
}

/// Keeps `systemctl status` showing the connection count.
async fn report_status(ctx: Arc<ServerContext>) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    let mut ticker = tokio::time::interval(std::time::Duration::from_secs(10));
    loop {
        ticker.tick().await;
        let totals = ctx.hub.totals();
        systemd::status(&format!(
            "{} connections, {} channels, {} subscriptions",
            ctx.telemetry.connections(),
            totals.channels,
            totals.subscriptions
        ));
    }
}
