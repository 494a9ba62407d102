//! Dispatch of one HTTP request: websocket upgrade, HTTP API, health,
//! metrics and the dashboard.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};

use super::context::ServerContext;
use super::response::{self, Body};
use super::{dashboard, http_api, ops, websocket};

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
            // `check --live` knows flarum-ws's answer by these words.
            "this is the websocket endpoint: connect with a websocket client such as pusher-js",
        ));
    }
    match path {
        "/up" => return Ok(ops::liveness()),
        "/ready" => return Ok(ops::readiness(&ctx)),
        "/metrics" => return Ok(ops::metrics(&ctx, &request, true)),
        "/about" => return Ok(ops::about(&ctx, peer, &request)),
        _ => {}
    }
    if path == "/dashboard" || path.starts_with("/dashboard/") {
        return Ok(dashboard::handle(&ctx, peer, request).await);
    }
    if path.starts_with("/apps/") || path.starts_with("/users/") {
        return Ok(http_api::handle(ctx, request).await);
    }
    Ok(response::error(
        StatusCode::NOT_FOUND,
        format!("no route for {path}"),
    ))
}
