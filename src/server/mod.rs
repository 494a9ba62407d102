//! The network side: one listener serving both the websocket route
//! (`/app/{key}`) and the signed HTTP API, plus graceful shutdown.
//!
//! [`run`] takes an already-bound listener and a cancellation token so that
//! tests can bind port 0 and stop the server whenever they like.

pub mod activation;
mod admin;
pub mod admission;
mod closing;
mod connection;
mod context;
mod dashboard;
mod guesses;
pub mod handover;
mod http_api;
pub mod limits;
mod memory;
mod ops;
mod port_holder;
mod rate;
pub mod realtime;
pub mod relay;
mod response;
mod router;
pub mod secret_rotation;
mod websocket;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use context::ServerContext;
pub use ops::serve_private_listener;
pub use port_holder::{listening_processes, port_holder};
pub use realtime::index_typing::sweep as sweep_index_typing;

use admission::{Capacity, ConnectionSlot};

use crate::config::Settings;
use crate::hub::{MAX_QUEUED_BYTES_PER_ADDRESS, MAX_QUEUED_BYTES_TOTAL};
use crate::throttle::Throttle;

/// The cluster's settings; `None` without `redis_url` (one node).
pub fn cluster_config(settings: &Settings) -> Option<crate::cluster::ClusterConfig> {
    Some(crate::cluster::ClusterConfig {
        redis_url: settings.redis_url.as_ref()?.expose().to_owned(),
        prefix: settings.redis_prefix.clone(),
        tls: crate::cluster::RedisTls {
            ca_file: settings.redis_ca_file.clone(),
            client_cert: settings.redis_client_cert.clone(),
            client_key: settings.redis_client_key.clone(),
        },
    })
}

/// How long shutdown waits for connections to say goodbye before exiting anyway.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// How often expired cache-channel events are dropped.
const CACHE_SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// Serves until `shutdown` is cancelled, then closes every websocket with
/// 4200 (reconnect now), lets in-flight HTTP requests finish and returns
/// within [`SHUTDOWN_GRACE`].
pub async fn run(
    listener: TcpListener,
    settings: Settings,
    shutdown: CancellationToken,
) -> io::Result<()> {
    serve(listener, Arc::new(ServerContext::new(settings, shutdown))).await
}

/// [`run`] with a context the caller keeps, to apply reloaded settings and
/// read the counters while the server runs.
pub async fn serve(listener: TcpListener, ctx: Arc<ServerContext>) -> io::Result<()> {
    let shutdown = ctx.shutdown.clone();
    let sweeper = tokio::spawn(sweep_cache(ctx.clone()));
    let trimmer = tokio::spawn(memory::give_back_memory(ctx.clone()));
    let budget_keeper = tokio::spawn(keep_queue_budget(ctx.clone()));
    let historian = tokio::spawn(sample_history(ctx.clone()));

    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    // Refused connections are dropped unanswered, before
                    // they cost a task or a buffer.
                    let Some(slot) = tcp_slot(&ctx, peer) else { continue };
                    let connection = connection::serve(ctx.clone(), stream, peer);
                    ctx.tracker.spawn(async move {
                        connection.await;
                        drop(slot);
                    });
                }
                Err(error) => accept_backoff(error).await,
            },
        }
    }
    drop(listener);
    ctx.offered.withdraw();
    sweeper.abort();
    trimmer.abort();
    budget_keeper.abort();
    historian.abort();

    let open = ctx.tracker.len();
    let spread = if ctx.handed_over() {
        ctx.settings().close_spread
    } else {
        Duration::ZERO
    };
    tracing::info!(
        "Shutting down: closing {open} connection(s) with 4200 (reconnect){}",
        if spread.is_zero() {
            String::new()
        } else {
            format!(", spread over {} s (close_spread)", spread.as_secs())
        }
    );
    ctx.closing.close(spread).await;
    ctx.tracker.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, ctx.tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            "{} connection(s) did not close within {} s; exiting anyway",
            ctx.tracker.len(),
            SHUTDOWN_GRACE.as_secs()
        );
    }
    Ok(())
}

/// Samples the dashboard's history every step, from the start.
async fn sample_history(ctx: Arc<ServerContext>) {
    let mut tick = tokio::time::interval(crate::telemetry::history::FINE_STEP);
    loop {
        tick.tick().await;
        ctx.sample_history();
    }
}

/// Refusals of connections over the per-address limit, logged at most once a minute.
static TCP_REFUSALS: Throttle = Throttle::new(Duration::from_secs(60));

/// Counts a new TCP connection against its address's share: past the
/// high-water mark of `max_connections` open connections, an address
/// holding its share (`max_connections_per_ip`, shrinking as the places
/// run out) is refused, as for websockets; below it, every address is
/// admitted. `Some(None)`: a trusted proxy, which carries many clients and
/// is not counted.
fn tcp_slot(ctx: &Arc<ServerContext>, peer: SocketAddr) -> Option<Option<ConnectionSlot>> {
    let settings = ctx.settings();
    let ip = peer.ip().to_canonical();
    if settings
        .trusted_proxies
        .iter()
        .any(|proxy| proxy.to_canonical() == ip)
    {
        return Some(None);
    }
    let capacity = Capacity {
        max_total: settings.limits.max_connections,
        max_per_address: settings.limits.max_connections_per_ip,
        full_refuses: false,
    };
    match ctx.tcp_slots.try_admit(ip, capacity) {
        Ok(slot) => Some(Some(slot)),
        Err(refused) => {
            ctx.telemetry.refused("tcp_address_share");
            if let Some(held_back) = TCP_REFUSALS.ready() {
                tracing::warn!(
                    "Refusing a connection: {refused} (max_connections_per_ip); {held_back} more refusals since the last such line"
                );
            }
            None
        }
    }
}

/// Accept errors are per-connection (e.g. the peer reset) or resource
/// exhaustion (out of file descriptors); neither may end the server.
async fn accept_backoff(error: io::Error) {
    tracing::warn!("accepting a connection failed: {error}; retrying");
    tokio::time::sleep(Duration::from_millis(50)).await;
}

/// Lines about connections dropped for the queued-bytes budget, at most
/// once a minute.
static BUDGET_DROPS: Throttle = Throttle::new(Duration::from_secs(60));

/// Drops the sockets that hold the most unsent data whenever an address or
/// the process goes over its queued-bytes budget (`hub::budget`).
async fn keep_queue_budget(ctx: Arc<ServerContext>) {
    loop {
        ctx.hub.budget().exceeded().await;
        let dropped = ctx.hub.enforce_budget();
        for _ in &dropped {
            ctx.telemetry.refused("queued_bytes");
        }
        if let Some(first) = dropped.first()
            && let Some(held_back) = BUDGET_DROPS.ready()
        {
            tracing::warn!(
                "Dropped {} connection(s) holding the most unsent data (4100; from {first}, among others): their address held more than {} unsent, or all clients more than {} ({held_back} more such drops since the last such line)",
                dropped.len(),
                limits::bytes(MAX_QUEUED_BYTES_PER_ADDRESS),
                limits::bytes(MAX_QUEUED_BYTES_TOTAL),
            );
        }
    }
}

async fn sweep_cache(ctx: Arc<ServerContext>) {
    let mut interval = tokio::time::interval(CACHE_SWEEP_INTERVAL);
    loop {
        interval.tick().await;
        if ctx.hub.expire_cache() >= memory::TRIM_AFTER_EXPIRED {
            memory::release_free_memory();
        }
    }
}

/// Binds the configured address, explaining the usual failures.
pub async fn bind(settings: &Settings) -> Result<TcpListener, BindError> {
    let ip = settings
        .host
        .parse()
        .map_err(|_| BindError::BadHost(settings.host.clone()))?;
    let address = SocketAddr::new(ip, settings.port);
    TcpListener::bind(address)
        .await
        .map_err(|reason| BindError::Io { address, reason })
}

/// The listener could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("host {0:?} is not an IP address")]
    BadHost(String),
    #[error("Failed to listen on tcp://{address}: {}", describe_bind_error(*address, reason))]
    Io {
        address: SocketAddr,
        reason: io::Error,
    },
}

impl BindError {
    /// Whether the port is taken (by another process, or a flarum-ws that
    /// may hand its socket over).
    pub fn address_in_use(&self) -> bool {
        matches!(self, Self::Io { reason, .. } if reason.kind() == io::ErrorKind::AddrInUse)
    }

    /// What to do; `port_source` says where the port was set
    /// (`Source::place_of`), since that is where to change it.
    pub fn fix(&self, port_source: &str) -> String {
        match self {
            Self::BadHost(_) => {
                "bind 0.0.0.0 (every address) or 127.0.0.1 (behind a local proxy)".into()
            }
            Self::Io { reason, .. } => match reason.kind() {
                io::ErrorKind::AddrInUse => format!(
                    "stop that process, or choose another port where it is set ({port_source}) and in the reverse proxy's proxy_pass"
                ),
                io::ErrorKind::PermissionDenied => format!(
                    "ports below 1024 need root or CAP_NET_BIND_SERVICE (see the unit file); or choose a higher port ({port_source})"
                ),
                io::ErrorKind::AddrNotAvailable => {
                    "this machine has no such address: bind 0.0.0.0 or 127.0.0.1".into()
                }
                _ => "see the reason above".into(),
            },
        }
    }
}

/// The reason, naming the process that holds the port when it is taken.
fn describe_bind_error(address: SocketAddr, reason: &io::Error) -> String {
    if reason.kind() != io::ErrorKind::AddrInUse {
        return reason.to_string();
    }
    match port_holder::port_holder(address.port()) {
        Some((pid, name)) => format!("the port is already used by {name} (pid {pid})"),
        None => "the port is already used by a process this user cannot see (`ss -ltnp` as root names it)".into(),
    }
}
