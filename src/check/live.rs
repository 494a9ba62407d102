//! `check --live`: the Kyrne extension's "Verifying Successful Setup" done by a
//! machine. Connect where a browser would, subscribe, trigger an event
//! through the HTTP API as the forum would, and receive it.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::Finding;
use super::idle::hold_idle;
use crate::config::Settings;
use crate::forum::RealtimeClient;
use crate::probe::{SignedClient, Target, connect, local_address};

/// How long each live step may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(5);

/// How `check --live` reaches the server and how long it waits.
#[derive(Debug, Clone, Default)]
pub struct LiveOptions {
    /// `host:port` to connect to instead of resolving the browser's host
    /// (the name is still used for TLS).
    pub via: Option<String>,
    /// `host:port` of this machine's reverse proxy (default 127.0.0.1:443),
    /// asked directly to tell its faults from a proxy's in front of it.
    pub proxy: Option<String>,
    /// `--idle`: after the event arrived, hold the connection idle this
    /// long to see whether a proxy cuts it.
    pub idle: Option<Duration>,
}

/// Where browsers connect ([`Browsers::port_and_tls`]), or `--via`
/// instead, the browsers' host name kept for TLS.
fn browser_target(settings: &Settings, browsers: &Browsers, options: &LiveOptions) -> Target {
    let (port, tls) = browsers.port_and_tls(settings);
    let host = browsers.host.as_str();
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
fn forum_target(settings: &Settings, browsers: &Browsers) -> Target {
    if let Some(php) = &browsers.php_side {
        return Target {
            address: php.host.clone(),
            port: php.port,
            tls: php.secure,
            server_name: php.host.clone(),
            insecure: settings.self_signed,
        };
    }
    let host = browsers.host.as_str();
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

/// The longest `activity_timeout` taken from a server's announcement (an
/// hour, the most flarum-ws's own setting allows).
const MAX_ANNOUNCED_ACTIVITY_SECS: u64 = 3600;

async fn within<T>(future: impl std::future::Future<Output = T>) -> Option<T> {
    tokio::time::timeout(STEP_TIMEOUT, future).await.ok()
}

/// The next JSON frame (a close becomes `{"event":"close"}`), or `None`.
pub(super) async fn next_frame<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>) -> Option<Value>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    // One deadline for the whole wait: a server that sends websocket pings
    // and nothing else must not keep `check` waiting for ever.
    within(async {
        loop {
            match ws.next().await? {
                Ok(Message::Text(text)) => return serde_json::from_str(&text).ok(),
                Ok(Message::Close(frame)) => {
                    return Some(
                        json!({"event": "close", "code": frame.map(|f| u16::from(f.code))}),
                    );
                }
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
    })
    .await?
}

/// A frame as an admin reads it: Pusher's error with its code, a close
/// with its code, or the frame's JSON (cut short).
pub(super) fn describe(frame: Option<&Value>) -> String {
    let Some(frame) = frame else {
        return format!(
            "nothing within {} s (the connection closed or stayed silent)",
            STEP_TIMEOUT.as_secs()
        );
    };
    match frame["event"].as_str() {
        Some("pusher:error") => format!(
            "pusher:error {} \"{}\"",
            error_code(frame).map_or_else(|| "without a code".into(), |c| c.to_string()),
            error_data(frame)["message"].as_str().unwrap_or_default()
        ),
        Some("close") => match frame["code"].as_u64() {
            Some(code) => format!("a close with code {code}"),
            None => "a close without a code".into(),
        },
        _ => first_line(&frame.to_string()),
    }
}

/// The data of a `pusher:error` frame, an object or a JSON string.
fn error_data(frame: &Value) -> Value {
    let data = &frame["data"];
    data.as_str()
        .and_then(|text| serde_json::from_str(text).ok())
        .unwrap_or_else(|| data.clone())
}

/// The code of a `pusher:error` frame.
fn error_code(frame: &Value) -> Option<u64> {
    error_data(frame)["code"].as_u64()
}

/// The first line of an answer with any HTML tags taken out, at most 200
/// characters: a proxy's error page is HTML, and its first words
/// ("404 Not Found") are what tells it apart.
fn first_line(text: &str) -> String {
    let mut plain = String::with_capacity(text.len());
    let mut in_tag = false;
    for c in text.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                plain.push('\n');
            }
            _ if !in_tag => plain.push(c),
            _ => {}
        }
    }
    let line = plain
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or_default();
    match line.char_indices().nth(200) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line.to_owned(),
    }
}

/// What the forum's pages do: the host they connect to, the port and
/// scheme when it is not the default, and the Origin they send.
pub struct Browsers {
    pub host: String,
    /// `(port, tls)`, e.g. flarum/realtime's js-client port and scheme.
    pub port: Option<(u16, bool)>,
    /// The forum's origin (`scheme://host[:port]` of its url), which the
    /// server's allowed origins are held to; without a forum, the host's.
    pub origin: Option<String>,
    /// Where the forum's PHP side posts events when it is not flarum-ws's
    /// own port (flarum/realtime's `php-client-*`: often the proxy's).
    pub php_side: Option<RealtimeClient>,
}

impl Browsers {
    /// The port browsers connect to and whether over TLS: `port` when the
    /// forum names it, else the proxy's 443 in reverse-proxy mode, else
    /// flarum-ws's own.
    pub fn port_and_tls(&self, settings: &Settings) -> (u16, bool) {
        match self.port {
            Some((port, tls)) => (port, tls),
            None if settings.reverse_proxy => (443, true),
            None => (settings.port, settings.tls.is_some()),
        }
    }

    fn origin_for(&self, target: &Target) -> String {
        self.origin.clone().unwrap_or_else(|| {
            format!(
                "{}://{}",
                target.scheme("https", "http"),
                target.server_name
            )
        })
    }
}

/// The handshake request for `url` with the Origin a browser on the
/// forum's pages sends (flarum/realtime refuses a websocket without one).
fn with_origin(
    url: &str,
    origin: &str,
) -> tokio_tungstenite::tungstenite::handshake::client::Request {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = url
        .into_client_request()
        .expect("the probe's URL is well-formed");
    if let Ok(value) = origin.parse() {
        request.headers_mut().insert("Origin", value);
    }
    request
}

/// Opens a websocket to `target` as a browser would; the HTTP status
/// when the upgrade is refused, `Ok(())` when it is accepted.
async fn upgrade_status(target: &Target, key: &str, origin: &str) -> Result<(), Option<u16>> {
    let url = format!(
        "{}://{}:{}/app/{key}?protocol=7&client=js&version=8.4.0&flash=false",
        target.scheme("wss", "ws"),
        target.server_name,
        target.port,
    );
    let stream = within(connect(target))
        .await
        .and_then(Result::ok)
        .ok_or(None)?;
    match within(tokio_tungstenite::client_async(
        with_origin(&url, origin),
        stream,
    ))
    .await
    {
        Some(Ok(_)) => Ok(()),
        Some(Err(WsError::Http(response))) => Err(Some(response.status().as_u16())),
        _ => Err(None),
    }
}

/// What flarum-ws answers (400) to a request for `/app/` that is not a
/// websocket upgrade (`server/router.rs`).
const NOT_AN_UPGRADE: &str = "this is the websocket endpoint";

/// The handshake reached flarum-ws, which answered `status` with its own
/// words: a proxy on the way passed the request but not its upgrade.
fn upgrade_not_passed(url: &str, status: u16) -> (String, String) {
    (
        format!(
            "{url}: flarum-ws itself answered the websocket handshake with HTTP {status}, as it answers a request without an Upgrade header: the proxy passes the request to flarum-ws but not the upgrade"
        ),
        "in the proxy's location that passes to flarum-ws, add proxy_http_version 1.1; proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection \"upgrade\"; (flarum-ws nginx-snippet prints the block), then nginx -t && systemctl reload nginx".into(),
    )
}

/// Why the upgrade was answered with `status` instead of 101, and the fix.
/// A 404 or 400/426 through the forum's address means the request reached
/// something other than flarum-ws: either the Upgrade header was dropped
/// before it reached this machine's proxy (a second proxy in front: another
/// nginx, a load balancer, a CDN), or this machine's proxy does not send
/// websockets to flarum-ws. Asking that proxy directly tells which.
async fn refused_upgrade(
    settings: &Settings,
    browsers: &Browsers,
    options: &LiveOptions,
    url: &str,
    status: u16,
) -> (String, String) {
    let answered = format!("{url}: the websocket handshake was answered with HTTP {status}");
    if (502..=504).contains(&status) {
        return (
            answered,
            "the proxy cannot reach flarum-ws: is it running, and does proxy_pass use its port?"
                .into(),
        );
    }
    if !matches!(status, 400 | 404 | 426) {
        return (answered, "see the proxy's error log".into());
    }
    if !settings.reverse_proxy {
        return (
            format!("{answered}, so something other than flarum-ws answers on that port"),
            "find what listens there (ss -ltnp) and stop it, or check the port and host settings"
                .into(),
        );
    }
    let local = local_proxy(&browsers.host, options);
    let shown = format!("{}:{}", local.address, local.port);
    match upgrade_status(&local, &settings.app.key, &browsers.origin_for(&local)).await {
        Ok(()) => (
            format!(
                "{answered}, while the proxy on this machine ({shown}) upgrades it: the Upgrade header is lost in front of it"
            ),
            format!(
                "a second proxy in front of {shown} (another nginx, a load balancer, a CDN) drops the Upgrade header: let it pass websockets (nginx: proxy_http_version 1.1; proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection \"upgrade\"; Cloudflare: Network, WebSockets on), or send /app/ straight to this machine's proxy"
            ),
        ),
        Err(Some(local_status)) => (
            format!(
                "{answered}; the proxy on this machine ({shown}) answers {local_status} too: it sends the websocket to the forum, not to flarum-ws"
            ),
            "add the `map $http_upgrade $type` and `location @ws` blocks to the forum's server block, with proxy_pass to flarum-ws's port on 127.0.0.1 (flarum-ws nginx-snippet prints them), then nginx -t && systemctl reload nginx".into(),
        ),
        Err(None) => (
            format!(
                "{answered}; the proxy on this machine could not be asked at {shown} to tell where the Upgrade header is lost"
            ),
            "either a proxy in front of this machine drops the Upgrade header (let it pass websockets), or this machine's nginx lacks the `location @ws` block (flarum-ws nginx-snippet prints it); pass --proxy HOST:PORT where this machine's proxy listens to tell them apart".into(),
        ),
    }
}

/// This machine's reverse proxy: `--proxy`, else port 443 on loopback.
/// Its certificate is not verified: only where it routes matters here.
fn local_proxy(host: &str, options: &LiveOptions) -> Target {
    let (address, port) = options
        .proxy
        .as_deref()
        .and_then(|p| p.rsplit_once(':'))
        .and_then(|(address, port)| Some((address.to_owned(), port.parse().ok()?)))
        .unwrap_or_else(|| ("127.0.0.1".to_owned(), 443));
    Target {
        address,
        port,
        tls: true,
        server_name: host.to_owned(),
        insecure: true,
    }
}

/// A websocket that got `pusher:connection_established`, the URL it was
/// opened at and the `activity_timeout` the server announced.
struct Connected {
    ws: tokio_tungstenite::WebSocketStream<crate::probe::Stream>,
    url: String,
    activity_timeout: Duration,
}

/// Opens a websocket where a browser would and waits for
/// `pusher:connection_established`; the failure, with its cause, otherwise.
async fn connect_as_a_browser(
    settings: &Settings,
    browsers: &Browsers,
    options: &LiveOptions,
) -> Result<Connected, Vec<Finding>> {
    let browser = browser_target(settings, browsers, options);
    let url = format!(
        "{}://{}:{}/app/{}?protocol=7&client=js&version=8.4.0&flash=false",
        browser.scheme("wss", "ws"),
        browser.server_name,
        browser.port,
        settings.app.key
    );
    let stream = match within(connect(&browser)).await {
        Some(Ok(stream)) => stream,
        Some(Err(error)) => return Err(fail(format!("{url}: {error}"), &error.fix())),
        None => {
            return Err(fail(
                format!("{url}: no answer"),
                "a firewall may be dropping the connection; open the port",
            ));
        }
    };
    let origin = browsers.origin_for(&browser);
    let (mut ws, _) = match within(tokio_tungstenite::client_async(
        with_origin(&url, &origin),
        stream,
    ))
    .await
    {
        Some(Ok(pair)) => pair,
        Some(Err(WsError::Http(response))) => {
            let status = response.status().as_u16();
            let from_flarum_ws = response
                .body()
                .as_deref()
                .is_some_and(|body| String::from_utf8_lossy(body).contains(NOT_AN_UPGRADE));
            let (message, fix) = if from_flarum_ws {
                upgrade_not_passed(&url, status)
            } else {
                refused_upgrade(settings, browsers, options, &url, status).await
            };
            return Err(fail(message, &fix));
        }
        Some(Err(error)) => {
            return Err(fail(
                format!("{url}: websocket handshake failed: {error}"),
                "\"WebSocket is closed before the connection is established\": check that only one proxy handles the websocket",
            ));
        }
        None => {
            return Err(fail(
                format!("{url}: the websocket handshake got no answer"),
                "check the proxy configuration",
            ));
        }
    };
    let established = next_frame(&mut ws).await;
    if established.as_ref().and_then(|f| f["event"].as_str())
        != Some("pusher:connection_established")
    {
        let fix = match established.as_ref().map(error_code) {
            Some(Some(4009)) => format!(
                "the server refuses the Origin the forum's pages send ({origin}): add it to allowed_origins (FLARUM_WS_ALLOWED_ORIGINS in /etc/default/flarum-ws), or on Flarum 2 set js-client-host in config.php's 'websocket' array"
            ),
            Some(Some(4001)) => {
                "the key browsers use must be the server's app key; check the extension's settings"
                    .to_owned()
            }
            _ => "check the server log with --verbose".to_owned(),
        };
        return Err(fail(
            format!(
                "{url}: expected pusher:connection_established, got {}",
                describe(established.as_ref())
            ),
            &fix,
        ));
    }
    // What pusher-js is told: it pings after this much silence.
    let activity_timeout =
        announced_activity_timeout(established.as_ref()).unwrap_or(settings.activity_timeout);
    Ok(Connected {
        ws,
        url,
        activity_timeout,
    })
}

/// The `activity_timeout` a `pusher:connection_established` frame
/// announces, held to the range flarum-ws itself allows, whatever server
/// sent it: 0 would ping in a busy loop, 2^64 - 1 s overflows a clock.
fn announced_activity_timeout(established: Option<&Value>) -> Option<Duration> {
    let data = established?["data"].as_str()?;
    let secs = serde_json::from_str::<Value>(data).ok()?["activity_timeout"].as_u64()?;
    Some(Duration::from_secs(
        secs.clamp(1, MAX_ANNOUNCED_ACTIVITY_SECS),
    ))
}

/// Connects where a browser would, subscribes, posts an event where the
/// forum's PHP side would, and waits for it to arrive.
pub async fn check_live(
    settings: &Settings,
    browsers: &Browsers,
    options: &LiveOptions,
) -> Vec<Finding> {
    let Connected {
        mut ws,
        url,
        activity_timeout,
    } = match connect_as_a_browser(settings, browsers, options).await {
        Ok(connected) => connected,
        Err(findings) => return findings,
    };
    let channel = format!(
        "{}{}",
        crate::cluster::bus::CHECK_CHANNEL_PREFIX,
        rand::random_range(0..u32::MAX)
    );
    let subscribe = json!({"event": "pusher:subscribe", "data": {"channel": channel}}).to_string();
    if !matches!(
        within(ws.send(Message::text(subscribe))).await,
        Some(Ok(()))
    ) {
        return fail(
            format!("{url}: the connection closed after connecting"),
            "check the server log",
        );
    }
    let _ = next_frame(&mut ws).await;

    let api = SignedClient {
        target: forum_target(settings, browsers),
        app_id: settings.app.id.clone(),
        key: settings.app.key.clone(),
        secret: settings.app.secret.expose().to_owned(),
    };
    if let Err(findings) = trigger(&api, browsers, &channel, "check").await {
        return findings;
    }
    match next_frame(&mut ws).await {
        Some(frame) if frame["event"] == "check" => {
            let mut findings = vec![Finding::pass(
                "live",
                format!("a browser at {url} received an event triggered through the HTTP API"),
            )];
            if let Some(cluster) = crate::server::cluster_config(settings) {
                findings.push(
                    super::live_cluster::across_nodes(
                        &cluster, &mut ws, &url, &api, browsers, &channel,
                    )
                    .await,
                );
            }
            if let Some(idle) = options.idle {
                findings.push(
                    hold_idle(&mut ws, &url, activity_timeout, settings.pong_timeout, idle).await,
                );
            }
            findings
        }
        other => fail(
            format!(
                "the triggered event did not arrive (got {})",
                describe(other.as_ref())
            ),
            "check the server log with --verbose",
        ),
    }
}

/// Triggers `event` on `channel` through the HTTP API as the forum does;
/// the findings say why it was not accepted.
pub(super) async fn trigger(
    api: &SignedClient,
    browsers: &Browsers,
    channel: &str,
    event: &str,
) -> Result<(), Vec<Finding>> {
    let body = json!({"name": event, "channel": channel, "data": "{\"from\":\"flarum-ws check\"}"})
        .to_string();
    let events = events_url(api);
    match api.post("/events", body).await {
        Ok((200, _)) => Ok(()),
        Ok((status, answer)) => {
            let fix = if status == 404 && browsers.php_side.is_some() {
                "the proxy there sends only the browsers' /app/ to flarum-ws: send /apps/ to it too (flarum-ws nginx-snippet prints a server block for both), or point php-client-host, php-client-port and php-client-secure in config.php's 'websocket' array at flarum-ws itself"
            } else {
                "the forum's app id, key and secret must match the server's"
            };
            Err(fail(
                format!(
                    "the forum posts its events to {events}, which answered {status}: {}",
                    first_line(&answer)
                ),
                fix,
            ))
        }
        Err(error) => Err(fail(
            format!("the forum posts its events to {events}, which is unreachable: {error}"),
            &error.fix(),
        )),
    }
}

/// Where the forum posts its events.
pub(super) fn events_url(api: &SignedClient) -> String {
    format!(
        "{}://{}:{}/apps/{}/events",
        api.target.scheme("https", "http"),
        api.target.server_name,
        api.target.port,
        api.app_id
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_server_announces_is_held_to_flarum_ws_s_own_range() {
        let announcing = |secs: &str| json!({"event": "pusher:connection_established", "data": format!("{{\"socket_id\":\"1.2\",\"activity_timeout\":{secs}}}")});
        let held = |secs: &str| announced_activity_timeout(Some(&announcing(secs)));
        assert_eq!(
            held("18446744073709551615"),
            Some(Duration::from_secs(3600))
        );
        assert_eq!(held("0"), Some(Duration::from_secs(1)));
        assert_eq!(held("120"), Some(Duration::from_secs(120)));
        assert_eq!(held("\"soon\""), None);
    }

    /// A server that sends websocket pings and nothing else: the wait for
    /// the next frame still ends, after its one deadline.
    #[tokio::test(start_paused = true)]
    async fn a_server_that_only_pings_does_not_hold_the_wait() {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let server = tokio::spawn(async move {
            let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
                server,
                tokio_tungstenite::tungstenite::protocol::Role::Server,
                None,
            )
            .await;
            loop {
                tokio::time::sleep(Duration::from_secs(2)).await;
                if ws.send(Message::Ping(Vec::new().into())).await.is_err() {
                    return;
                }
            }
        });
        let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
            client,
            tokio_tungstenite::tungstenite::protocol::Role::Client,
            None,
        )
        .await;
        let started = tokio::time::Instant::now();
        assert_eq!(next_frame(&mut ws).await, None);
        assert_eq!(started.elapsed(), STEP_TIMEOUT);
        server.abort();
    }

    #[test]
    fn a_proxys_error_page_reads_as_its_first_words() {
        let page = "<html>\r\n<head><title>404 Not Found</title></head>\r\n<body>\r\n<center><h1>404 Not Found</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";
        assert_eq!(first_line(page), "404 Not Found");
        assert_eq!(first_line(&"x".repeat(300)).chars().count(), 201);
    }

    #[test]
    fn frames_read_as_an_admin_would() {
        let error = json!({"event": "pusher:error", "data": {"code": 4009, "message": "Origin not allowed"}});
        assert_eq!(
            describe(Some(&error)),
            "pusher:error 4009 \"Origin not allowed\""
        );
        let as_string = json!({"event": "pusher:error", "data": "{\"code\":4001,\"message\":\"App key x not in this cluster\"}"});
        assert_eq!(error_code(&as_string), Some(4001));
        assert_eq!(
            describe(Some(&json!({"event": "close", "code": 4200}))),
            "a close with code 4200"
        );
        assert!(describe(None).starts_with("nothing within 5 s"));
    }
}
