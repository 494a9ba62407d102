//! Dispatch of one HTTP request: websocket upgrade, HTTP API, health.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};

use super::context::ServerContext;
use super::response::{self, Body};
use super::{http_api, websocket};

pub async fn route(
    ctx: Arc<ServerContext>,
    peer: SocketAddr,
    request: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let path = request.uri().path();
    if websocket::is_upgrade(&request) {
        return Ok(websocket::upgrade(ctx, peer, request));
    }
    if path.starts_with("/app/") {
        return Ok(response::error(
            StatusCode::BAD_REQUEST,
            "this is the websocket endpoint: connect with a websocket client such as pusher-js",
        ));
    }
    if path == "/up" {
        return Ok(if ctx.shutdown.is_cancelled() {
            response::text(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n")
        } else {
            response::text(StatusCode::OK, "OK\n")
        });
    }
    if path.starts_with("/apps/") || path.starts_with("/users/") {
        return Ok(http_api::handle(ctx, request).await);
    }
    Ok(response::error(
        StatusCode::NOT_FOUND,
        format!("no route for {path}"),
    ))
}
