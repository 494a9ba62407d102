//! Operator endpoints: `/up` (liveness: the process answers), `/ready`
//! (readiness: accepting connections; 503 while draining on shutdown, so a
//! load balancer stops sending clients), `/metrics` (Prometheus) and
//! `/about` (which forum's app this process serves, for `check` on the same
//! machine to tell "our server" from another forum's on the same port).
//!
//! On the main port `/metrics` needs the admin token or the app secret as a
//! bearer token, since that port is usually public. `metrics_listen` opens a
//! second, plain-HTTP listener (meant for 127.0.0.1 or a private network)
//! that serves these three paths without a token.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::header::WWW_AUTHENTICATE;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use super::admin;
use super::context::ServerContext;
use super::response::{self, Body};
use crate::telemetry::metrics::CONTENT_TYPE;

/// The process is alive and answering.
pub fn liveness() -> Response<Body> {
    response::text(StatusCode::OK, "OK\n")
}

/// The app this process serves, its version and pid: nothing secret (the
/// key is in every forum page), but answered only to a client on this
/// machine that came straight, not through a proxy, as nobody else needs it.
pub fn about(ctx: &ServerContext, peer: SocketAddr, request: &Request<Incoming>) -> Response<Body> {
    let proxied = ["x-forwarded-for", "forwarded", "x-real-ip"]
        .iter()
        .any(|header| request.headers().contains_key(*header));
    if !peer.ip().is_loopback() || proxied {
        return response::error(StatusCode::NOT_FOUND, "no route for /about");
    }
    let settings = ctx.settings();
    response::json(
        StatusCode::OK,
        &serde_json::json!({
            "server": "flarum-ws",
            "version": env!("CARGO_PKG_VERSION"),
            "pid": std::process::id(),
            "app_id": settings.app.id,
            "key": settings.app.key,
            "working_directory": std::env::current_dir().ok(),
            "settings": *ctx.in_force(),
        }),
    )
}

/// Whether new clients should be sent here.
pub fn readiness(ctx: &ServerContext) -> Response<Body> {
    if ctx.shutdown.is_cancelled() {
        response::text(StatusCode::SERVICE_UNAVAILABLE, "draining: shutting down\n")
    } else {
        response::text(StatusCode::OK, "ready\n")
    }
}

/// The metrics, or 401 when `check_token` and the request has no credential.
pub fn metrics(
    ctx: &ServerContext,
    request: &Request<Incoming>,
    check_token: bool,
) -> Response<Body> {
    if check_token && !admin::is_authorized(ctx, request.headers()) {
        let refused = response::error(
            StatusCode::UNAUTHORIZED,
            "metrics need the admin token (or the app secret) as a bearer token, or use metrics_listen for a private listener",
        );
        return response::with_header(refused, WWW_AUTHENTICATE, "Bearer");
    }
    response::typed(StatusCode::OK, CONTENT_TYPE, ctx.render_metrics())
}

/// Serves `/metrics`, `/up` and `/ready` without a token. It keeps serving
/// while the main port drains on shutdown, so `/ready` can say so, and ends
/// with the process.
pub async fn serve_private_listener(listener: TcpListener, ctx: Arc<ServerContext>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!("metrics listener: accepting failed: {error}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let ctx = ctx.clone();
                async move { Ok::<_, Infallible>(private_route(&ctx, &request)) }
            });
            if let Err(error) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!("metrics connection from {peer} ended: {error}");
            }
        });
    }
}

fn private_route(ctx: &ServerContext, request: &Request<Incoming>) -> Response<Body> {
    match request.uri().path() {
        "/metrics" => metrics(ctx, request, false),
        "/up" => liveness(),
        "/ready" => readiness(ctx),
        path => response::error(
            StatusCode::NOT_FOUND,
            format!("no route for {path}; this listener serves /metrics, /up and /ready"),
        ),
    }
}
