//! What operators see: /metrics (values after real traffic, and who may read
//! them), /up and /ready, the dashboard's access rules and JSON endpoints,
//! JSON logs, the systemd notify protocol and the shipped unit file.

use std::collections::BTreeMap;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::process::{flarum_ws, free_port, http_get, http_get_with, start};
use crate::common::{SECRET, TestServer};
use flarum_ws::config::Secret;
use futures_util::SinkExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

const ADMIN_TOKEN: &str = "ops-token-for-tests";

/// Samples of an OpenMetrics text, by `name{labels}`.
fn parse_samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("sample line");
            (series.to_owned(), value.parse().expect("numeric sample"))
        })
        .collect()
}

async fn scrape(base: &str, token: Option<&str>) -> (u16, String) {
    let mut request = reqwest::Client::new().get(format!("{base}/metrics"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test]
async fn metrics_count_what_clients_and_the_api_did() {
    let server = TestServer::with(|s| s.admin_token = Some(Secret::new(ADMIN_TOKEN))).await;
    let base = format!("http://{}", server.addr);

    let (status, body) = scrape(&base, None).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("admin token"), "{body}");
    assert_eq!(scrape(&base, Some("wrong")).await.0, 401);

    let mut reader = server.subscriber("news").await;
    let mut member = server.client().await;
    member
        .subscribe_presence("presence-room", r#"{"user_id":"7"}"#)
        .await;
    let (status, _) = server.api().trigger("news", "posted", "{}").await;
    assert_eq!(status, 200);
    reader.expect_event("posted").await;
    let (status, _) = server
        .api()
        .raw("POST", "/apps/42/events?auth_key=test-key", "{}")
        .await;
    assert_eq!(status, 401);
    member
        .ws
        .close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        }))
        .await
        .unwrap();

    // The closed socket is counted once its session has ended.
    let deadline = Instant::now() + Duration::from_secs(5);
    let samples = loop {
        let (status, text) = scrape(&base, Some(ADMIN_TOKEN)).await;
        assert_eq!(status, 200);
        assert!(text.ends_with("# EOF\n"));
        let samples = parse_samples(&text);
        if samples.get("flarum_ws_connections") == Some(&1.0) || Instant::now() > deadline {
            break samples;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let get = |name: &str| {
        samples
            .get(name)
            .copied()
            .unwrap_or_else(|| panic!("no {name} in {samples:?}"))
    };
    assert_eq!(get("flarum_ws_connections"), 1.0);
    assert_eq!(get("flarum_ws_connections_opened_total"), 2.0);
    assert_eq!(
        get(r#"flarum_ws_connections_closed_total{code="1000"}"#),
        1.0
    );
    assert_eq!(get("flarum_ws_channels"), 1.0);
    assert_eq!(get("flarum_ws_subscriptions"), 1.0);
    assert_eq!(get("flarum_ws_presence_members"), 0.0);
    assert_eq!(get("flarum_ws_messages_received_total"), 2.0);
    // Two connection_established, two subscription_succeeded, one event.
    assert!(get("flarum_ws_messages_sent_total") >= 5.0);
    assert!(get("flarum_ws_sent_bytes_total") > 100.0);
    assert_eq!(
        get(r#"flarum_ws_http_api_requests_total{endpoint="events",status="200"}"#),
        1.0
    );
    assert_eq!(
        get(r#"flarum_ws_http_api_requests_total{endpoint="events",status="401"}"#),
        1.0
    );
    assert_eq!(get("flarum_ws_http_api_events_total"), 1.0);
    assert_eq!(get("flarum_ws_fanout_duration_seconds_count"), 1.0);
    assert!(get("process_resident_memory_bytes") > 1e6);
    assert!(get("process_open_fds") > 3.0);

    let (_, text) = scrape(&base, Some(ADMIN_TOKEN)).await;
    assert!(!text.contains(SECRET), "no secret in the metrics");
    // The app secret works as a bearer token too.
    assert_eq!(scrape(&base, Some(SECRET)).await.0, 200);
    server.shutdown.cancel();
}

/// GETs `url` with the admin token as a bearer token; the JSON answer.
async fn admin_json(http: &reqwest::Client, url: &str) -> Value {
    http.get(url)
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_dashboard_is_closed_without_the_token() {
    let server = TestServer::with(|s| s.admin_token = Some(Secret::new(ADMIN_TOKEN))).await;
    let base = format!("http://{}", server.addr);
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    let page = http.get(format!("{base}/dashboard")).send().await.unwrap();
    assert_eq!(page.status().as_u16(), 401);
    let html = page.text().await.unwrap();
    assert!(html.contains("name=\"token\""), "a sign-in form: {html}");
    assert!(
        !html.contains("/dashboard/state"),
        "not the dashboard itself"
    );

    let wrong = http
        .get(format!("{base}/dashboard?token=guess"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status().as_u16(), 401);
    assert!(wrong.text().await.unwrap().contains("not right"));
    for path in ["/dashboard/state", "/dashboard/feed"] {
        let refused = http.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(refused.status().as_u16(), 401, "{path}");
        let with_cookie = http
            .get(format!("{base}{path}"))
            .header("cookie", "flarum_ws_admin=guess")
            .send()
            .await
            .unwrap();
        assert_eq!(with_cookie.status().as_u16(), 401, "{path}");
    }
    let trigger = http
        .post(format!("{base}/dashboard/trigger"))
        .json(&json!({"name":"x","channel":"public","data":"{}"}))
        .send()
        .await
        .unwrap();
    assert_eq!(trigger.status().as_u16(), 401);

    // Signing in with the app secret sets a cookie holding the admin token.
    let signed_in = http
        .post(format!("{base}/dashboard"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={SECRET}"))
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status().as_u16(), 303);
    let cookie = signed_in.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        cookie.starts_with(&format!("flarum_ws_admin={ADMIN_TOKEN};")),
        "{cookie}"
    );
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    assert!(!cookie.contains(SECRET));
    let cookie = cookie.split(';').next().unwrap().to_owned();

    let page = http
        .get(format!("{base}/dashboard"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status().as_u16(), 200);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert!(page.text().await.unwrap().contains("/dashboard/state"));

    // A form from another site cannot post JSON; the plain-form post is refused.
    let form_post = http
        .post(format!("{base}/dashboard/trigger"))
        .header("cookie", &cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("name=x&channel=public&data=%7B%7D")
        .send()
        .await
        .unwrap();
    assert_eq!(form_post.status().as_u16(), 415);

    let mut watcher = server.subscriber("public").await;
    let sent = http
        .post(format!("{base}/dashboard/trigger"))
        .header("cookie", &cookie)
        .json(&json!({"name":"hello","channel":"public","data":"{\"from\":\"dashboard\"}"}))
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status().as_u16(), 200);
    let answer: Value = sent.json().await.unwrap();
    assert_eq!(answer["subscribers"], 1);
    let event = watcher.expect_event("hello").await;
    assert_eq!(event["data"], "{\"from\":\"dashboard\"}");

    let state = admin_json(&http, &format!("{base}/dashboard/state")).await;
    assert_eq!(state["connections"], 1);
    assert_eq!(state["channels"][0]["name"], "public");
    assert_eq!(state["channels"][0]["subscription_count"], 1);
    let feed = admin_json(&http, &format!("{base}/dashboard/feed?after=0")).await;
    let kinds: Vec<&str> = feed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["connected", "subscribed", "api_event"]);
    for text in [state.to_string(), feed.to_string()] {
        assert!(!text.contains(SECRET), "no secret on the dashboard: {text}");
    }
    server.shutdown.cancel();
}

fn standalone(dir: &Path) -> Command {
    let mut command = flarum_ws(dir);
    command
        .env("FLARUM_WS_APP_ID", "1")
        .env("FLARUM_WS_APP_KEY", "ops-key")
        .env("FLARUM_WS_APP_SECRET", "ops-secret-never-logged")
        .args(["serve", "--host", "127.0.0.1", "--port", "0"]);
    command
}

/// `/about` tells a client on this machine which app the server serves
/// (what `check` asks a flarum-ws holding its port), and nothing to a
/// request that came through a proxy.
#[test]
fn about_answers_this_machine_only() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(&mut standalone(dir.path()));
    let (status, body) = http_get(server.port, "/about");
    assert_eq!(status, 200, "{body}");
    let about: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(about["app_id"], "1", "{about}");
    assert_eq!(about["key"], "ops-key", "{about}");
    assert_eq!(about["pid"], server.child.id(), "{about}");
    assert!(!body.contains("ops-secret"), "{body}");
    let (status, body) = http_get_with(server.port, "/about", "X-Forwarded-For: 203.0.113.9\r\n");
    assert_eq!(status, 404, "{body}");
    server.stop_cleanly();
}

/// The private listener serves metrics without a token, and `/ready` turns
/// 503 while the main port drains (a client that does not answer the
/// shutdown close keeps it draining for a moment).
#[tokio::test]
async fn private_listener_and_readiness_while_draining() {
    let dir = tempfile::tempdir().unwrap();
    let metrics_port = free_port();
    let server = start(standalone(dir.path()).env(
        "FLARUM_WS_METRICS_LISTEN",
        format!("127.0.0.1:{metrics_port}"),
    ));
    let (status, text) = http_get(metrics_port, "/metrics");
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("flarum_ws_connections 0"), "{text}");
    assert_eq!(http_get(metrics_port, "/ready"), (200, "ready\n".into()));
    assert_eq!(http_get(server.port, "/ready").0, 200);
    assert_eq!(http_get(server.port, "/metrics").0, 401);

    // Connected, then never reads again.
    let (_silent, _) = tokio_tungstenite::connect_async(format!(
        "ws://127.0.0.1:{}/app/ops-key?protocol=7",
        server.port
    ))
    .await
    .unwrap();
    server.signal("TERM");
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut seen = Vec::new();
    loop {
        let (status, body) = http_get(metrics_port, "/ready");
        seen.push(status);
        if status == 503 {
            assert!(body.contains("draining"), "{body}");
            assert_eq!(http_get(metrics_port, "/up").0, 200, "alive while draining");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never reported draining: {seen:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn json_logs_are_one_object_per_line_and_never_hold_the_secret() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(standalone(dir.path()).args(["--log-format", "json", "--verbose"]));
    // A refused API call and a websocket with a bad key give problem lines.
    let (status, _) = http_get(
        server.port,
        "/apps/1/channels?auth_key=ops-key&auth_signature=bad&auth_timestamp=1&auth_version=1.0",
    );
    assert_eq!(status, 401);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let url = format!("ws://127.0.0.1:{}/app/ops-key?protocol=7", server.port);
        let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        ws.send(Message::text(
            r#"{"event":"pusher:subscribe","data":{"channel":"private-x","auth":"ops-key:bad"}}"#,
        ))
        .await
        .unwrap();
        ws.send(Message::text("not json")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
    });
    let lines = server.stop_cleanly();
    assert!(lines.len() >= 3, "{lines:?}");
    let mut problems_with_socket = 0;
    for line in &lines {
        let object: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        assert!(object["timestamp"].is_string(), "{line}");
        assert!(object["level"].is_string(), "{line}");
        assert!(object["message"].is_string(), "{line}");
        assert!(
            !line.contains("ops-secret-never-logged"),
            "secret in {line}"
        );
        let message = object["message"].as_str().unwrap();
        if object["level"] == "DEBUG" && message.contains("Connection id") {
            problems_with_socket += 1;
        }
    }
    assert!(
        problems_with_socket >= 1,
        "socket ids on problem lines: {lines:?}"
    );
}

/// A stand-in for systemd's notify socket: the datagrams the server sends.
struct NotifySocket {
    socket: UnixDatagram,
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
}

impl NotifySocket {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Self {
            socket,
            _dir: dir,
            path,
        }
    }

    /// The next datagram that contains `needle`.
    fn expect(&self, needle: &str) -> String {
        let mut buffer = [0u8; 4096];
        loop {
            let len = self
                .socket
                .recv(&mut buffer)
                .unwrap_or_else(|e| panic!("no {needle} notification: {e}"));
            let message = String::from_utf8_lossy(&buffer[..len]).into_owned();
            if message.contains(needle) {
                return message;
            }
        }
    }
}

#[test]
fn systemd_hears_ready_reloading_watchdog_and_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let notify = NotifySocket::new();
    let mut command = standalone(dir.path());
    command
        .env("NOTIFY_SOCKET", &notify.path)
        .env("WATCHDOG_USEC", "200000");
    let mut server = start(&mut command);

    let ready = notify.expect("READY=1");
    assert!(ready.contains("STATUS=listening on 127.0.0.1:"), "{ready}");
    // READY=1 is sent once the port accepts connections.
    assert_eq!(http_get(server.port, "/up").0, 200);
    notify.expect("WATCHDOG=1");
    notify.expect("WATCHDOG=1");

    server.signal("HUP");
    let reloading = notify.expect("RELOADING=1");
    assert!(reloading.contains("MONOTONIC_USEC="), "{reloading}");
    notify.expect("READY=1");

    server.signal("TERM");
    notify.expect("STOPPING=1");
    assert_eq!(server.lines_until_exit().0, 0);
}

#[test]
#[ignore = "needs systemd-analyze (Debian package systemd)"]
fn the_shipped_unit_file_verifies() {
    let unit = Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/flarum-ws.service");
    let text = std::fs::read_to_string(&unit).unwrap();
    for needed in [
        "Type=notify",
        "Restart=on-failure",
        "LimitNOFILE=",
        "WatchdogSec=",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "User=www-data",
        "EnvironmentFile=-/etc/default/flarum-ws",
        "ProtectSystem=strict",
    ] {
        assert!(text.contains(needed), "the unit lacks {needed}");
    }
    let Ok(analyze) = which("systemd-analyze") else {
        panic!("systemd-analyze is needed to verify the unit (Debian package systemd)");
    };
    // Verify a copy that runs the binary just built.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("flarum-ws.service");
    let text = text.replace("/usr/bin/flarum-ws", env!("CARGO_BIN_EXE_flarum-ws"));
    std::fs::write(&copy, text).unwrap();
    let output = Command::new(analyze)
        .args(["verify", "--man=no"])
        .arg(&copy)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let problems: Vec<&str> = stderr
        .lines()
        .filter(|line| line.contains("flarum-ws.service"))
        .collect();
    assert!(output.status.success() && problems.is_empty(), "{stderr}");
}

fn which(program: &str) -> Result<std::path::PathBuf, ()> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
        .ok_or(())
}

/// Started by socket activation (`systemd-socket-activate`, systemd's own
/// tool, passing the socket as flarum-ws-listen.socket does), `serve` takes the
/// socket it is given: a trigger sent before flarum-ws even ran waits in the
/// backlog and is answered, not refused. A socket elsewhere than the
/// settings say is named in a warning.
#[tokio::test]
async fn a_socket_from_systemd_is_served_and_what_waited_in_it_is_answered() {
    for settings_port_offset in [0u16, 1] {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let settings_port = (port + settings_port_offset).to_string();
        let mut command = Command::new("systemd-socket-activate");
        command
            .current_dir(dir.path())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap())
            .args(["-l", &format!("127.0.0.1:{port}")])
            // It passes the program only the variables named with -E.
            .args(["-E", &format!("FLARUM_WS_APP_ID={}", crate::common::APP_ID)])
            .args(["-E", &format!("FLARUM_WS_APP_KEY={}", crate::common::KEY)])
            .args(["-E", &format!("FLARUM_WS_APP_SECRET={SECRET}")])
            .arg(env!("CARGO_BIN_EXE_flarum-ws"))
            .args(["serve", "--host", "127.0.0.1", "--port", &settings_port]);
        // systemd-socket-activate says "Listening on 127.0.0.1:PORT as 3."
        // and starts flarum-ws with the first connection.
        let mut server = start(&mut command);
        assert_eq!(server.port, port);
        let api = crate::common::Api {
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
        };
        let (status, body) = api.trigger("news", "posted", "{}").await;
        assert_eq!(status, 200, "{body}");
        let log = server.stop_cleanly();
        assert!(
            log.iter()
                .any(|l| l.contains("Using the listening socket systemd holds")),
            "{log:#?}"
        );
        let warned = log
            .iter()
            .any(|l| l.contains("the socket unit listens on") && l.contains("ListenStream="));
        assert_eq!(warned, settings_port_offset != 0, "{log:#?}");
    }
}

/// A forum whose clock is off has its events refused (401): the server
/// says so in its log, with both clocks, once a minute at most.
#[tokio::test]
async fn a_request_refused_for_its_clock_is_logged_with_both_clocks() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(
        flarum_ws(dir.path())
            .envs(crate::common::CREDENTIALS)
            .args(["serve", "--host", "127.0.0.1", "--port", "0"]),
    );
    let api = crate::common::Api {
        base: format!("http://127.0.0.1:{}", server.port),
        http: reqwest::Client::new(),
    };
    let path = format!("/apps/{}/events", crate::common::APP_ID);
    let body = json!({"name": "posted", "channel": "news", "data": "{}"}).to_string();
    let stale = crate::common::unix_now() - 900;
    for _ in 0..3 {
        let query = crate::common::signed_query("POST", &path, &[], &body, stale);
        let (status, _) = api.raw("POST", &format!("{path}?{query}"), &body).await;
        assert_eq!(status, 401);
    }
    let log = server.stop_cleanly();
    let told: Vec<&String> = log
        .iter()
        .filter(|l| l.contains("Refused an HTTP API request for its clock"))
        .collect();
    assert_eq!(told.len(), 1, "{log:#?}");
    assert!(
        told[0].contains(&format!("auth_timestamp {stale}")) && told[0].contains("s apart"),
        "{told:?}"
    );
}

/// `flarum-ws serve` of the test app on 127.0.0.1:`port` in `dir`, closing
/// its tabs over `close_spread` seconds when it hands over (the default
/// when `None`).
fn serving_on(dir: &Path, port: &str, close_spread: Option<&str>) -> Command {
    let mut command = flarum_ws(dir);
    command
        .envs(crate::common::CREDENTIALS)
        .args(["serve", "--host", "127.0.0.1", "--port", port]);
    if let Some(spread) = close_spread {
        command.env("FLARUM_WS_CLOSE_SPREAD", spread);
    }
    command
}

/// Where a tab of the test app connects on 127.0.0.1:`port`.
fn tab_url(port: u16) -> String {
    format!(
        "ws://127.0.0.1:{port}/app/{}?protocol=7",
        crate::common::KEY
    )
}

/// The forum's PHP side: a new connection for each call, as
/// pusher-php-server's curl makes them.
fn forum_api(port: u16) -> crate::common::Api {
    crate::common::Api {
        base: format!("http://127.0.0.1:{port}"),
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap(),
    }
}

/// Issue 36, without systemd: a second `serve` on the same port while the
/// first runs takes its listening socket over (the socket itself, one
/// backlog), then the first closes its tabs with 4200 and exits. Through
/// the handover, 200 triggers a second, each on a new connection as the
/// forum's PHP makes them, are all answered 200; the tab's reconnection
/// lands on the new process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_serve_takes_the_socket_over_and_refuses_no_trigger() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port().to_string();
    let serve = || serving_on(dir.path(), &port, None);
    let mut first = start(&mut serve());
    let port = first.port;
    let mut tab = crate::common::Client::connect(&tab_url(port)).await;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let triggers = tokio::spawn(async move {
        let api = forum_api(port);
        let (mut sent, mut failed) = (0u32, Vec::new());
        let mut tick = tokio::time::interval(Duration::from_millis(5));
        while !*stopped.borrow() {
            tick.tick().await;
            sent += 1;
            let (status, body) = api.trigger("news", "posted", "{}").await;
            if status != 200 {
                failed.push(format!("{status} {body}"));
            }
        }
        (sent, failed)
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut second = start(&mut serve());
    assert_eq!(
        tab.expect_close().await,
        4200,
        "the first process closes its tabs to reconnect"
    );
    let (code, log) = first.lines_until_exit();
    assert_eq!(code, 0, "{log:#?}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.send(true).unwrap();
    let (sent, failed) = triggers.await.unwrap();
    assert!(sent > 200, "{sent} triggers sent");
    eprintln!(
        "{sent} triggers through the handover, {} failed",
        failed.len()
    );
    assert!(
        failed.is_empty(),
        "{} of {sent} failed: {failed:?}",
        failed.len()
    );
    let (_, about) = http_get(port, "/about");
    let about: Value = serde_json::from_str(&about).unwrap();
    assert_eq!(
        about["pid"],
        second.child.id(),
        "new connections reach the second process"
    );
    let log = second.stop_cleanly();
    assert!(
        log.iter()
            .any(|l| l.contains("Took over the listening socket")),
        "{log:#?}"
    );
}

/// Issue 36: while the first process closes its tabs over `close_spread`,
/// the forum's triggers reach the second one only. The two relay what they
/// publish to each other until the first exits, so every tab gets every
/// event until its own close: none of the numbered events is missing, and
/// the tabs closed last got those triggered seconds after the handover
/// (without the relay they stopped at the handover).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tabs_waiting_for_their_close_get_the_new_process_s_events() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port().to_string();
    let serve = || serving_on(dir.path(), &port, Some("4"));
    let mut first = start(&mut serve());
    let port = first.port;
    let mut tabs = Vec::new();
    for _ in 0..32 {
        let mut tab = crate::common::Client::connect(&tab_url(port)).await;
        tab.subscribe("news").await;
        tabs.push(tokio::spawn(async move {
            // The event numbers this tab got before its close.
            let mut got = Vec::new();
            loop {
                match futures_util::StreamExt::next(&mut tab.ws).await {
                    Some(Ok(Message::Text(text))) => {
                        let frame: Value = serde_json::from_str(&text).unwrap();
                        if frame["event"] == "posted" {
                            got.push(frame["data"].as_str().unwrap().parse::<u32>().unwrap());
                        }
                    }
                    Some(Ok(Message::Close(close))) => {
                        return (got, close.map(|c| u16::from(c.code)));
                    }
                    Some(Ok(_)) => {}
                    _ => return (got, None),
                }
            }
        }));
    }
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let triggers = tokio::spawn({
        let sent = sent.clone();
        async move {
            let api = forum_api(port);
            let mut tick = tokio::time::interval(Duration::from_millis(50));
            while !*stopped.borrow() {
                tick.tick().await;
                let n = sent.load(std::sync::atomic::Ordering::SeqCst) + 1;
                let (status, body) = api.trigger("news", "posted", &n.to_string()).await;
                assert_eq!(status, 200, "{body}");
                sent.store(n, std::sync::atomic::Ordering::SeqCst);
            }
        }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut second = start(&mut serve());
    let at_handover = sent.load(std::sync::atomic::Ordering::SeqCst);
    let (code, log) = first.lines_until_exit();
    assert_eq!(code, 0, "{log:#?}");
    stop.send(true).unwrap();
    triggers.await.unwrap();
    let mut last_seen = 0;
    for tab in tabs {
        let (got, close) = tab.await.unwrap();
        assert_eq!(close, Some(4200), "{got:?}");
        let expected: Vec<u32> = (1..=got.last().copied().unwrap_or(0)).collect();
        assert_eq!(got, expected, "a tab missed events before its close");
        last_seen = last_seen.max(got.len() as u32);
    }
    assert!(
        last_seen >= at_handover + 40,
        "the tabs closed last got events up to {last_seen}; {at_handover} were sent before the handover"
    );
    let log = second.stop_cleanly();
    assert!(
        log.iter()
            .any(|l| l.contains("The previous flarum-ws of the handover has gone: passed it")),
        "{log:#?}"
    );
}

/// Issue 36, presence through a handover: 16 members on the first
/// process, each tab reconnecting to the second on its 4200 as pusher-js
/// does. Nobody sees anyone leave or arrive: the tabs waiting for their
/// close keep every member, each tab that moved finds the whole list on
/// the new process, and after the old one has gone the list is still
/// whole. (Without the relay, tabs on the old process saw each member
/// leave as they moved, and the early movers found a partial list.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_members_move_to_the_new_process_unannounced() {
    const MEMBERS: usize = 16;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port().to_string();
    let serve = || serving_on(dir.path(), &port, Some("2"));
    let mut first = start(&mut serve());
    let port = first.port;
    let url = tab_url(port);
    // Joins and returns how many members the subscription listed.
    async fn join(url: &str, user: usize) -> (crate::common::Client, u64) {
        let mut tab = crate::common::Client::connect(url).await;
        let answer = tab
            .subscribe_presence("presence-room", &format!(r#"{{"user_id":"{user}"}}"#))
            .await;
        assert_eq!(
            answer["event"], "pusher_internal:subscription_succeeded",
            "{answer}"
        );
        let data: Value = serde_json::from_str(answer["data"].as_str().unwrap()).unwrap();
        (tab, data["presence"]["count"].as_u64().unwrap())
    }
    let mut tabs = Vec::new();
    for user in 0..MEMBERS {
        tabs.push(join(&url, user).await.0);
    }
    // Each tab first hears of those who joined after it.
    for (user, tab) in tabs.iter_mut().enumerate() {
        for _ in user + 1..MEMBERS {
            tab.expect_event("pusher_internal:member_added").await;
        }
    }
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut moving = Vec::new();
    for (user, mut tab) in tabs.into_iter().enumerate() {
        let url = url.clone();
        let mut stopped = stopped.clone();
        moving.push(tokio::spawn(async move {
            // Member events seen, and the list found on the new process.
            let mut seen = Vec::new();
            let mut listed_after_move = None;
            loop {
                let frame = tokio::select! {
                    _ = stopped.changed() => return (seen, listed_after_move, tab),
                    frame = futures_util::StreamExt::next(&mut tab.ws) => frame,
                };
                match frame {
                    Some(Ok(Message::Text(text))) => {
                        let frame: Value = serde_json::from_str(&text).unwrap();
                        let event = frame["event"].as_str().unwrap_or_default();
                        if event.starts_with("pusher_internal:member_") {
                            seen.push(format!("{event} {}", frame["data"]));
                        }
                    }
                    Some(Ok(Message::Close(close))) => {
                        let code = close.map(|c| u16::from(c.code));
                        assert_eq!(code, Some(4200), "user {user}");
                        assert!(listed_after_move.is_none(), "user {user} closed twice");
                        let (new_tab, listed) = join(&url, user).await;
                        tab = new_tab;
                        listed_after_move = Some(listed);
                    }
                    Some(Ok(_)) => {}
                    other => panic!("user {user}: {other:?}"),
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut second = start(&mut serve());
    let (code, log) = first.lines_until_exit();
    assert_eq!(code, 0, "{log:#?}");
    // Past the grace in which the old process's leaves take effect.
    tokio::time::sleep(flarum_ws::server::relay::MOVE_GRACE + Duration::from_secs(1)).await;
    stop.send(true).unwrap();
    let mut open = Vec::new();
    for (user, tab) in moving.into_iter().enumerate() {
        let (seen, listed, tab) = tab.await.unwrap();
        open.push(tab);
        assert_eq!(
            listed,
            Some(MEMBERS as u64),
            "user {user} found a partial list"
        );
        assert!(seen.is_empty(), "user {user} saw {seen:?}");
    }
    let api = crate::common::Api {
        base: format!("http://127.0.0.1:{port}"),
        http: reqwest::Client::new(),
    };
    let (status, users) = api
        .get(
            &format!(
                "/apps/{}/channels/presence-room/users",
                crate::common::APP_ID
            ),
            &[],
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(users["users"].as_array().unwrap().len(), MEMBERS, "{users}");
    drop(open);
    second.stop_cleanly();
}
