//! The websocket side: the upgrade handshake, the decision whether the client
//! may connect, and the per-connection session (`session.rs` runs it,
//! `handler.rs` answers each Pusher event, `outbox.rs` batches frames,
//! `wire.rs` is the plain socket the hub's writers may write to). What a
//! Flarum 2 forum adds is in `server::realtime`, which the handler calls.
//!
//! Rejections (unknown key, missing or unsupported protocol, wrong path) are
//! made *after* the upgrade, as `pusher:error` plus a close code: pusher-js
//! only stops retrying when it sees the protocol's close code, while an HTTP
//! error makes it retry forever.

mod handler;
mod outbox;
mod pace;
mod session;
pub mod wire;

pub(crate) use handler::{
    CHANNEL_CREATION_ADDRESSES, CHANNEL_CREATION_BURST, CHANNEL_CREATIONS_PER_SECOND,
    CONNECTIONS_PER_ALLOWANCE, SUBSCRIBES_PER_SECOND,
};
pub(crate) use pace::{BYTE_BURST, BYTES_PER_SECOND, FRAME_BURST, FRAMES_PER_SECOND};
pub(crate) use session::{MAX_BATCH, MAX_BATCH_BYTES};

use std::net::SocketAddr;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::header::{
    CONNECTION, HeaderValue, ORIGIN, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY,
    SEC_WEBSOCKET_VERSION, UPGRADE,
};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

use super::admission::{Capacity, client_ip, origin_allowed};
use super::context::ServerContext;
use super::response::{self, Body};
use crate::protocol::{close_code, is_supported_protocol};
use crate::throttle::Throttle;
use pace::Paced;
use wire::Wire;

/// Refused origins are logged at most once a minute: any web page can
/// make browsers knock.
static ORIGIN_REFUSALS: Throttle = Throttle::new(std::time::Duration::from_secs(60));

/// Websockets refused over `max_connections` or `max_connections_per_ip`,
/// logged at most once a minute: a client retrying in a loop must not fill
/// the disk.
static CAPACITY_REFUSALS: Throttle = Throttle::new(std::time::Duration::from_secs(60));

/// Per-connection read buffer, and the most read at once. tungstenite's
/// default (128 KiB) would cost more memory than everything else a
/// connection holds together. Client frames (subscribe with presence data,
/// signin, client events) nearly always fit in 1 KiB; a larger one takes a
/// few reads. tungstenite clears this much of the buffer before every read,
/// so all of it is touched and resident for every connection: each KiB here
/// is a KiB per idle connection in bench/RESULTS.md's memory column.
const READ_BUFFER_BYTES: usize = 1024;

/// Frames are gathered up to this size and written with one system call
/// (flushed at the end of each batch); the buffer grows only as far as a
/// batch needs.
const WRITE_BUFFER_BYTES: usize = 64 * 1024;

/// Whether the request asks for a websocket upgrade.
pub fn is_upgrade(request: &Request<Incoming>) -> bool {
    let has_token = |name, token: &str| {
        request.headers().get_all(name).iter().any(|value| {
            value
                .to_str()
                .map(|v| {
                    v.split(',')
                        .any(|part| part.trim().eq_ignore_ascii_case(token))
                })
                .unwrap_or(false)
        })
    };
    has_token(UPGRADE, "websocket") && has_token(CONNECTION, "upgrade")
}

/// What the server decided about a websocket client before it says a word.
#[derive(Debug, Clone, PartialEq)]
enum Admission {
    Accept,
    Reject { code: u16, message: String },
}

fn admit(ctx: &ServerContext, path: &str, query: Option<&str>) -> Admission {
    let reject = |code, message: String| Admission::Reject { code, message };
    let Some(key) = path.strip_prefix("/app/") else {
        return reject(
            close_code::PATH_NOT_FOUND,
            format!("no websocket endpoint at {path}; clients connect to /app/<app key>"),
        );
    };
    let key = key.trim_end_matches('/');
    if key != ctx.settings().app.key {
        return reject(
            close_code::APP_NOT_FOUND,
            format!("App key {key} does not exist; check the key the forum gives pusher-js"),
        );
    }
    let protocol = query.and_then(|q| {
        form_urlencoded::parse(q.as_bytes())
            .find(|(name, _)| name == "protocol")
            .map(|(_, value)| value.into_owned())
    });
    match protocol {
        None => reject(
            close_code::NO_PROTOCOL,
            "No protocol version supplied; add ?protocol=7".into(),
        ),
        Some(version) => match version.parse::<u8>() {
            Err(_) => reject(
                close_code::INVALID_VERSION,
                format!("Invalid protocol version {version:?}; use 7"),
            ),
            Ok(v) if !is_supported_protocol(v) => reject(
                close_code::UNSUPPORTED_PROTOCOL,
                format!("Unsupported protocol version {v}; this server speaks 5 to 7"),
            ),
            Ok(_) => Admission::Accept,
        },
    }
}

fn websocket_config(ctx: &ServerContext) -> WebSocketConfig {
    let max_message = ctx.settings().limits.max_message_bytes;
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(WRITE_BUFFER_BYTES)
        .max_message_size(Some(max_message))
        .max_frame_size(Some(max_message))
}

/// Answers the handshake with 101 and hands the upgraded stream to a session.
pub fn upgrade(
    ctx: Arc<ServerContext>,
    peer: SocketAddr,
    mut request: Request<Incoming>,
) -> Response<Body> {
    let version_ok = request
        .headers()
        .get(SEC_WEBSOCKET_VERSION)
        .is_some_and(|v| v.as_bytes() == b"13");
    let Some(key) = request.headers().get(SEC_WEBSOCKET_KEY).cloned() else {
        return response::error(StatusCode::BAD_REQUEST, "missing Sec-WebSocket-Key header");
    };
    if !version_ok {
        let refused = response::error(
            StatusCode::UPGRADE_REQUIRED,
            "only websocket version 13 is supported",
        );
        return response::with_header(refused, SEC_WEBSOCKET_VERSION, "13");
    }
    if ctx.shutdown.is_cancelled() {
        return response::error(StatusCode::SERVICE_UNAVAILABLE, "server is shutting down");
    }
    let settings = ctx.settings();
    let mut admission = admit(&ctx, request.uri().path(), request.uri().query());
    let origin = request.headers().get(ORIGIN).and_then(|v| v.to_str().ok());
    if admission == Admission::Accept
        && !origin_allowed(origin, &settings.allowed_origins, settings.require_origin)
    {
        let shown = origin.unwrap_or("(no Origin header)");
        if let Some(held_back) = ORIGIN_REFUSALS.ready() {
            tracing::warn!(
                "Refused a websocket from a page on {shown} ({held_back} more since the last such line): only {} may connect. If that is your forum too (www. or another name), add it: FLARUM_WS_ALLOWED_ORIGINS={},{shown}",
                settings.allowed_origins.join(", "),
                settings.allowed_origins.join(","),
            );
        }
        admission = Admission::Reject {
            code: close_code::UNAUTHORIZED,
            message: format!("Origin {shown} is not allowed to connect"),
        };
    }
    // Behind a trusted proxy that does not name the client, the proxy's
    // address stands for everyone behind it.
    let ip = client_ip(
        peer,
        request.headers(),
        &settings.trusted_proxies,
        settings.client_address_header,
    );
    // The slot travels with the session and is given back when it ends.
    let mut slot = None;
    if admission == Admission::Accept {
        let limits = &settings.limits;
        let capacity = Capacity {
            max_total: limits.max_connections,
            max_per_address: limits.max_connections_per_ip,
            full_refuses: true,
        };
        match ctx.slots.try_admit(ip, capacity) {
            Ok(admitted) => slot = Some(admitted),
            Err(refused) => {
                ctx.telemetry.refused(refused.reason());
                let message = refused.to_string();
                if let Some(held_back) = CAPACITY_REFUSALS.ready() {
                    tracing::warn!(
                        "Refusing a websocket connection: {message} ({held_back} more since the last such line)"
                    );
                }
                admission = Admission::Reject {
                    code: close_code::OVER_CAPACITY,
                    message,
                };
            }
        }
    }
    let config = websocket_config(&ctx);
    let wire = request.extensions().get::<Arc<Wire>>().cloned();
    let on_upgrade = hyper::upgrade::on(&mut request);
    let task_ctx = ctx.clone();
    ctx.tracker.spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let socket = WebSocketStream::from_raw_socket(
                    Paced::new(TokioIo::new(upgraded), task_ctx.clone()),
                    Role::Server,
                    Some(config),
                )
                .await;
                match admission {
                    Admission::Accept => {
                        session::run(task_ctx, socket, wire, ip).await;
                        drop(slot);
                    }
                    Admission::Reject { code, message } => {
                        task_ctx.telemetry.connection_refused(code);
                        session::reject(socket, code, &message).await
                    }
                }
            }
            Err(error) => tracing::debug!("websocket upgrade failed: {error}"),
        }
    });

    let mut switching = Response::new(Body::default());
    *switching.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = switching.headers_mut();
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    let accept = derive_accept_key(key.as_bytes());
    headers.insert(
        SEC_WEBSOCKET_ACCEPT,
        HeaderValue::from_str(&accept).expect("base64 is a valid header value"),
    );
    switching
}
