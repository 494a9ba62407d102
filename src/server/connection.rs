//! One TCP connection: HTTP/1.1 served by hyper, upgraded to a websocket on
//! `/app/{key}`. On shutdown an idle keep-alive connection is closed and a
//! request in flight is allowed to finish.
//!
//! Time limits, so that a client cannot hold a connection (and the memory
//! of a half-sent body) by sending slowly: the request head must arrive
//! within `handshake_timeout` of the connection's start (a TLS handshake
//! included), and the request must then be answered within
//! `handshake_timeout` too, body included; otherwise it is answered 408 and
//! the connection closed. A connection that sends nothing is closed when
//! its `handshake_timeout` is up, once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use hyper::StatusCode;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::context::ServerContext;
use super::websocket::wire::Wire;
use super::{response, router, websocket};

/// Largest request head (request line and headers) accepted.
pub(super) const MAX_HEAD_BYTES: usize = 16 * 1024;

/// The kernel's send buffer per connection (Linux doubles what is asked for
/// its bookkeeping). Left to itself it grows to megabytes for a client that
/// stops reading, memory outside every bound of ours and a delay before the
/// stall is noticed; capped, a stalled client fills its own bounded queue in
/// a moment and is dropped with 4100. A reading client drains 128 KiB as
/// fast as any larger buffer; a burst beyond it waits in the socket's queue.
pub(super) const SEND_BUFFER_BYTES: usize = 128 * 1024;

pub async fn serve(ctx: Arc<ServerContext>, stream: TcpStream, peer: SocketAddr) {
    // Events are small and latency matters more than packet count.
    let _ = stream.set_nodelay(true);
    let _ = socket2::SockRef::from(&stream).set_send_buffer_size(SEND_BUFFER_BYTES);
    let handshake_timeout = ctx.settings().limits.handshake_timeout;
    let head_due = Instant::now() + handshake_timeout;
    match ctx.tls.clone() {
        None => match first_bytes(&ctx, &stream, peer).await {
            FirstBytes::Http => {
                let (stream, wire) = Wire::new(stream);
                serve_http(ctx, stream, peer, Some(wire), head_due).await
            }
            FirstBytes::Tls => answer_tls_in_plain(stream).await,
            FirstBytes::Nothing => {}
        },
        Some(acceptor) => {
            match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => serve_http(ctx, tls, peer, None, head_due).await,
                Ok(Err(error)) => tracing::debug!("TLS handshake with {peer} failed: {error}"),
                Err(_) => tracing::debug!("TLS handshake with {peer} timed out"),
            }
        }
    }
}

/// What a plain connection opened with.
enum FirstBytes {
    /// Anything else: hyper reads it as HTTP (and refuses what is not).
    Http,
    /// A TLS handshake: a browser on an https forum page connecting to
    /// wss://, or a probe aimed at the wrong port.
    Tls,
    /// Nothing before shutdown, or before `handshake_timeout` was up.
    Nothing,
}

/// How long a connection accepted before shutdown still has to send its
/// first bytes once shutdown begins.
const DRAIN_FIRST_BYTES: Duration = Duration::from_secs(1);

/// Waits for the first byte (no longer than `handshake_timeout`, then
/// hyper times the rest of the head) and sorts the connection. A TLS
/// handshake is told to the admin once at warn level, later ones at debug
/// level.
async fn first_bytes(ctx: &ServerContext, stream: &TcpStream, peer: SocketAddr) -> FirstBytes {
    /// A TLS record of type "handshake" starts with this byte; HTTP never does.
    const TLS_HANDSHAKE: u8 = 0x16;
    static TOLD: AtomicBool = AtomicBool::new(false);
    let mut first = [0u8; 1];
    let deadline = ctx.settings().limits.handshake_timeout;
    // A connection accepted just before shutdown is the forum's API call or
    // a tab like any other: it gets a moment more to send its request
    // (which it does right after connecting), then it is answered.
    let peeked = {
        let peek = tokio::time::timeout(deadline, stream.peek(&mut first));
        tokio::pin!(peek);
        tokio::select! {
            peeked = &mut peek => peeked,
            _ = ctx.shutdown.cancelled() => {
                match tokio::time::timeout(DRAIN_FIRST_BYTES, peek).await {
                    Ok(peeked) => peeked,
                    Err(_) => return FirstBytes::Nothing,
                }
            }
        }
    };
    let Ok(Ok(1)) = peeked else {
        // Silent for the whole handshake_timeout (or closed): the time it
        // had is up; hyper would otherwise give it as much again.
        return FirstBytes::Nothing;
    };
    if first[0] != TLS_HANDSHAKE {
        return FirstBytes::Http;
    }
    if !TOLD.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            "{peer} started a TLS handshake (wss://) on this plain port; it cannot be served. \
             Browsers on an https forum connect with wss:// only: turn on \"Reverse Proxy Support\" \
             and put nginx in front (flarum-ws nginx-snippet), or set the certificate and key so \
             flarum-ws serves TLS itself (flarum-ws check says which applies)"
        );
    } else {
        tracing::debug!("{peer} started a TLS handshake on the plain port");
    }
    FirstBytes::Tls
}

/// Answers a TLS handshake on the plain port in plain HTTP, as nginx does
/// the other way round: a TLS client then reports "not TLS" (which `check`
/// turns into "this port speaks plain HTTP") instead of a bare reset. The
/// handshake is read first, so that closing does not reset the answer away.
async fn answer_tls_in_plain(mut stream: TcpStream) {
    const BODY: &str = "This port of flarum-ws speaks plain HTTP (ws://), not TLS (wss://).\n";
    let answer = format!(
        "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{BODY}",
        BODY.len()
    );
    let mut hello = [0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_millis(200), stream.read(&mut hello)).await;
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        stream.write_all(answer.as_bytes()).await?;
        stream.shutdown().await
    })
    .await;
}

/// Serves HTTP on `stream`. `wire` (plain connections only) travels with
/// a websocket upgrade request, so that the websocket can be written to
/// directly by the hub's writers. The first request head is due at
/// `head_due` (later ones within `handshake_timeout` of their start).
async fn serve_http<S>(
    ctx: Arc<ServerContext>,
    stream: S,
    peer: SocketAddr,
    wire: Option<Arc<Wire>>,
    head_due: Instant,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service_ctx = ctx.clone();
    let service = service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
        let ctx = service_ctx.clone();
        if let Some(wire) = wire.as_ref().filter(|_| websocket::is_upgrade(&request)) {
            request.extensions_mut().insert(wire.clone());
        }
        let deadline = ctx.settings().limits.handshake_timeout;
        async move {
            match tokio::time::timeout(deadline, router::route(ctx, peer, request)).await {
                Ok(answered) => answered,
                Err(_) => {
                    tracing::debug!("request from {peer} not complete within {deadline:?}");
                    Ok(response::error(
                        StatusCode::REQUEST_TIMEOUT,
                        format!(
                            "the request did not arrive within {} s (handshake_timeout)",
                            deadline.as_secs()
                        ),
                    ))
                }
            }
        }
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(
            head_due
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1)),
        )
        .max_buf_size(MAX_HEAD_BYTES.max(8192))
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(connection);
    // The connection first: its request is in the socket's buffer (the
    // first bytes were seen), and hyper must have begun it before a
    // graceful shutdown, which closes only an idle connection at once.
    let result = tokio::select! {
        biased;
        result = connection.as_mut() => result,
        _ = ctx.shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = result {
        tracing::debug!("HTTP connection from {peer} ended: {error}");
    }
}
