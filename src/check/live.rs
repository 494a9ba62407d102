//! `check --live`: the Kyrne extension's "Verifying Successful Setup" done by a
//! machine. Connect where a browser would, subscribe, trigger an event
//! through the HTTP API as the forum would, and receive it.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::Finding;
use crate::config::Settings;
use crate::probe::{SignedClient, Target, connect, local_address};

/// How long each live step may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Default)]
pub struct LiveOptions {
    /// `host:port` to connect to instead of resolving the browser's host
    /// (the name is still used for TLS).
    pub via: Option<String>,
}

/// Where browsers connect: through the proxy on 443, or straight to the port.
fn browser_target(settings: &Settings, host: &str, options: &LiveOptions) -> Target {
    let (tls, port) = if settings.reverse_proxy {
        (true, 443)
    } else {
        (settings.tls.is_some(), settings.port)
    };
    let (address, port) = match options.via.as_deref().and_then(|v| v.rsplit_once(':')) {
        Some((address, via_port)) => (address.to_owned(), via_port.parse().unwrap_or(port)),
        None => (host.to_owned(), port),
    };
    Target {
        address,
        port,
        tls,
        server_name: host.to_owned(),
        insecure: settings.self_signed,
    }
}

/// Where the forum's PHP side sends API requests.
fn forum_target(settings: &Settings, host: &str) -> Target {
    let address = local_address(&settings.host);
    Target {
        address,
        port: settings.port,
        tls: settings.tls.is_some(),
        server_name: host.to_owned(),
        insecure: settings.self_signed,
    }
}

fn fail(message: String, fix: &str) -> Vec<Finding> {
    vec![Finding::fail("live", message, fix)]
}

async fn within<T>(future: impl std::future::Future<Output = T>) -> Option<T> {
    tokio::time::timeout(STEP_TIMEOUT, future).await.ok()
}

/// The next JSON frame (a close becomes `{"event":"close"}`), or `None`.
async fn next_frame<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>) -> Option<Value>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        match within(ws.next()).await?? {
            Ok(Message::Text(text)) => return serde_json::from_str(&text).ok(),
            Ok(Message::Close(frame)) => {
                return Some(json!({"event": "close", "code": frame.map(|f| u16::from(f.code))}));
            }
            Ok(_) => continue,
            Err(_) => return None,
        }
    }
}

pub async fn check_live(settings: &Settings, host: &str, options: &LiveOptions) -> Vec<Finding> {
    let browser = browser_target(settings, host, options);
    let url = format!(
        "{}://{}:{}/app/{}?protocol=7&client=js&version=8.4.0&flash=false",
        browser.scheme("wss", "ws"),
        browser.server_name,
        browser.port,
        settings.app.key
    );
    let stream = match within(connect(&browser)).await {
        Some(Ok(stream)) => stream,
        Some(Err(error)) => return fail(format!("{url}: {error}"), &error.fix()),
        None => {
            return fail(
                format!("{url}: no answer"),
                "a firewall may be dropping the connection; open the port",
            );
        }
    };
    let (mut ws, _) = match within(tokio_tungstenite::client_async(url.as_str(), stream)).await {
        Some(Ok(pair)) => pair,
        Some(Err(WsError::Http(response))) => {
            let status = response.status().as_u16();
            let fix = match status {
                404 => {
                    "the proxy does not send /app/ to flarum-ws: check the `location @ws` block and that proxy_pass uses the configured port on 127.0.0.1"
                }
                400 | 426 => {
                    "a proxy on the way drops the Upgrade header: is the connection proxied twice? Configure the websocket on the proxy closest to the user"
                }
                502..=504 => {
                    "the proxy cannot reach flarum-ws: is it running, and does proxy_pass use its port?"
                }
                _ => "see the proxy's error log",
            };
            return fail(
                format!("{url}: the websocket handshake was answered with HTTP {status}"),
                fix,
            );
        }
        Some(Err(error)) => {
            return fail(
                format!("{url}: websocket handshake failed: {error}"),
                "\"WebSocket is closed before the connection is established\": check that only one proxy handles the websocket",
            );
        }
        None => {
            return fail(
                format!("{url}: the websocket handshake got no answer"),
                "check the proxy configuration",
            );
        }
    };
    let established = next_frame(&mut ws).await;
    if established.as_ref().and_then(|f| f["event"].as_str())
        != Some("pusher:connection_established")
    {
        return fail(
            format!("{url}: expected pusher:connection_established, got {established:?}"),
            "the key browsers use must be the server's app key; check the extension's settings",
        );
    }
    let channel = format!("flarum-ws-check-{}", rand::random_range(0..u32::MAX));
    let subscribe = json!({"event": "pusher:subscribe", "data": {"channel": channel}}).to_string();
    if ws.send(Message::text(subscribe)).await.is_err() {
        return fail(
            format!("{url}: the connection closed after connecting"),
            "check the server log",
        );
    }
    let _ = next_frame(&mut ws).await;

    let api = SignedClient {
        target: forum_target(settings, host),
        app_id: settings.app.id.clone(),
        key: settings.app.key.clone(),
        secret: settings.app.secret.expose().to_owned(),
    };
    let body =
        json!({"name": "check", "channel": channel, "data": "{\"from\":\"flarum-ws check\"}"})
            .to_string();
    match api.post("/events", body).await {
        Ok((200, _)) => {}
        Ok((status, answer)) => {
            return fail(
                format!("the HTTP API answered {status}: {answer}"),
                "the forum's app id, key and secret must match the server's",
            );
        }
        Err(error) => {
            return fail(
                format!("the HTTP API (where the forum sends events) is unreachable: {error}"),
                &error.fix(),
            );
        }
    }
    match next_frame(&mut ws).await {
        Some(frame) if frame["event"] == "check" => vec![Finding::pass(
            "live",
            format!("a browser at {url} received an event triggered through the HTTP API"),
        )],
        other => fail(
            format!("the triggered event did not arrive (got {other:?})"),
            "check the server log with --verbose",
        ),
    }
}
