//! The printed reverse-proxy configuration, checked by real nginx: `nginx -t`
//! accepts it, and nginx terminating TLS on a loopback port proxies pusher-js
//! to flarum-ws while the rest of the site is still served by `@web`.

use crate::common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::common::nginx::{Nginx, nginx_conf};
use crate::common::pki::{Leaf, Pki};
use crate::common::process::{BrowserTab, flarum_ws, free_port, start, succeed};
use crate::common::*;
use flarum_ws::probe::{Target, request};

/// `command` as flarum-ws behind nginx: the test credentials, reverse-proxy
/// mode, `port`.
fn behind_nginx(command: &mut Command, port: u16) -> &mut Command {
    command
        .envs(CREDENTIALS)
        .env("FLARUM_WS_REVERSE_PROXY", "true")
        .env("FLARUM_WS_PORT", port.to_string())
}

/// A server block for `localhost` with TLS from `leaf` on `port`, holding
/// `body` (its locations, each line indented).
fn tls_server_block(port: u16, leaf: &Leaf, body: &str) -> String {
    format!(
        "server {{\n  listen 127.0.0.1:{port} ssl;\n  server_name localhost;\n  ssl_certificate {};\n  ssl_certificate_key {};\n{body}}}\n",
        leaf.full_chain.display(),
        leaf.key.display()
    )
}

/// What `nginx-snippet --full` prints for the forum at `forum` (flarum-ws
/// on `ws_port`, nginx on `listen` with TLS from `leaf`).
fn full_server_block(forum: &Path, ws_port: u16, listen: u16, leaf: &Leaf) -> String {
    succeed(
        behind_nginx(&mut flarum_ws(forum), ws_port)
            .args(["nginx-snippet", "--full", "--server-name", "localhost"])
            .args(["--listen", &format!("127.0.0.1:{listen} ssl")])
            .arg("--forum-root")
            .arg(forum)
            .arg("--ssl-certificate")
            .arg(&leaf.full_chain)
            .arg("--ssl-certificate-key")
            .arg(&leaf.key),
    )
}

/// A pusher-js 8 tab through nginx's TLS port (trusting `pki`'s root)
/// subscribes to `public` and gets the `newPost` event with `data` that
/// `flarum-ws` (the command given, its credentials set) triggers.
fn pusher_js_through_nginx_gets(nginx_port: u16, pki: &Pki, flarum_ws: &mut Command, data: &str) {
    let mut tab = BrowserTab::open(
        "8",
        nginx_port,
        KEY,
        "public",
        "newPost",
        Some(&pki.root_pem),
    );
    assert_eq!(tab.line(), "subscribed", "pusher-js through nginx");
    succeed(flarum_ws.args(["trigger", "public", "newPost", data]));
    assert_eq!(tab.line(), data);
    assert!(tab.child.wait().unwrap().success());
}

#[tokio::test]
#[ignore = "needs nginx and the npm packages of tests/conformance"]
async fn nginx_terminates_tls_and_proxies_pusher_js_while_the_site_stays_up() {
    let pki = Pki::new();
    let leaf = pki.leaf("forum", false);
    let forum = tempfile::tempdir().unwrap();
    std::fs::create_dir(forum.path().join("public")).unwrap();
    std::fs::write(forum.path().join("public/index.html"), "forum home\n").unwrap();
    // Flarum's .nginx.conf after the guide's edit (its first location renamed to @web).
    std::fs::write(
        forum.path().join(".nginx.conf"),
        "location @web {\n  try_files $uri $uri/ /index.php?$query_string;\n}\n",
    )
    .unwrap();

    let ws_port = free_port();
    let server = start(behind_nginx(&mut flarum_ws(forum.path()), ws_port).arg("serve"));
    assert_eq!(server.port, ws_port);

    let nginx_port = free_port();
    let snippet = full_server_block(forum.path(), ws_port, nginx_port, &leaf);
    assert!(
        snippet.contains(&format!(
            "proxy_pass             http://127.0.0.1:{ws_port};"
        )),
        "{snippet}"
    );

    let conf_dir = tempfile::tempdir().unwrap();
    let conf = nginx_conf(conf_dir.path(), &snippet);
    succeed(Command::new("nginx").arg("-t").arg("-c").arg(&conf));

    let nginx = Nginx::start(&conf, nginx_port);
    let target = Target {
        address: "127.0.0.1".into(),
        port: nginx_port,
        tls: true,
        server_name: "localhost".into(),
        insecure: true,
    };
    let mut home = Err(flarum_ws::probe::ProbeError::Http("not asked yet".into()));
    for _ in 0..50 {
        home = request(&target, "GET", "/index.html", String::new()).await;
        if home.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        home.unwrap(),
        (200, "forum home\n".to_owned()),
        "the site is served by @web"
    );

    pusher_js_through_nginx_gets(
        nginx_port,
        &pki,
        behind_nginx(&mut flarum_ws(forum.path()), ws_port),
        r#"{"postId":3}"#,
    );

    drop(nginx);
    drop(server);
}

#[test]
fn caddy_and_apache_formats_name_the_port() {
    let dir = tempfile::tempdir().unwrap();
    for (format, needle) in [
        ("caddy", "reverse_proxy @websocket 127.0.0.1:2999"),
        ("apache", "ws://127.0.0.1:2999/app/$1"),
    ] {
        let output = behind_nginx(&mut flarum_ws(dir.path()), 2999)
            .args([
                "nginx-snippet",
                "--format",
                format,
                "--server-name",
                "forum.example",
            ])
            .output()
            .unwrap();
        assert!(output.status.success());
        let text = String::from_utf8(output.stdout).unwrap();
        assert!(text.contains(needle), "{format}: {text}");
    }
}

/// Item 14 of the check audit: a second proxy in front of the forum's nginx
/// that does not pass the Upgrade header sends the websocket to the forum,
/// which answers 404 (with the snippet's own layout, not 400/426). `check`
/// asks this machine's nginx directly and blames the proxy in front; with
/// nginx itself lacking the websocket block, it says that instead. The
/// docs/troubleshooting.md quotes both.
#[test]
#[ignore = "needs nginx"]
fn a_double_proxy_and_a_missing_websocket_block_are_told_apart() {
    let pki = Pki::new();
    let leaf = pki.leaf("forum", false);
    let forum = tempfile::tempdir().unwrap();
    std::fs::create_dir(forum.path().join("public")).unwrap();
    // Stands in for Flarum's front controller: unknown paths are 404.
    std::fs::write(
        forum.path().join(".nginx.conf"),
        "location @web {\n  try_files $uri $uri/ =404;\n}\n",
    )
    .unwrap();
    let ws_port = free_port();
    let server = start(behind_nginx(&mut flarum_ws(forum.path()), ws_port).arg("serve"));
    let inner_port = free_port();
    let inner_dir = tempfile::tempdir().unwrap();
    let inner_conf = nginx_conf(
        inner_dir.path(),
        &full_server_block(forum.path(), ws_port, inner_port, &leaf),
    );
    let inner = Nginx::start(&inner_conf, inner_port);

    // The proxy in front: a plain proxy_pass, without the upgrade headers.
    let outer_port = free_port();
    let outer_dir = tempfile::tempdir().unwrap();
    let outer_conf = nginx_conf(
        outer_dir.path(),
        &tls_server_block(
            outer_port,
            &leaf,
            &format!(
                "  location / {{\n    proxy_pass https://127.0.0.1:{inner_port};\n    proxy_ssl_server_name on;\n    proxy_ssl_name localhost;\n    proxy_set_header Host localhost;\n  }}\n"
            ),
        ),
    );
    let outer = Nginx::start(&outer_conf, outer_port);

    let check = |via: u16| {
        let mut command = flarum_ws(forum.path());
        behind_nginx(&mut command, ws_port)
            .env("FLARUM_WS_APP_HOST", "localhost")
            .env("SSL_CERT_FILE", &pki.root_pem);
        let via = format!("127.0.0.1:{via}");
        let proxy = format!("127.0.0.1:{inner_port}");
        common::checking::check_json(&mut command, &["--live", "--via", &via, "--proxy", &proxy])
    };
    // Straight to this machine's nginx: all good.
    let (code, findings) = check(inner_port);
    assert_eq!(code, 0, "{findings:#?}");

    // `check --live` through `via` fails with `message` and `fix`, and
    // docs/troubleshooting.md quotes it.
    let live_fails = |via: u16, message: &str, fix: &str| {
        let (code, findings) = check(via);
        assert_eq!(code, 1, "{findings:#?}");
        let live = common::checking::finding(&findings, "live");
        common::checking::assert_finding(live, "fail", message, fix);
        common::checking::assert_in_troubleshooting(live);
    };
    // This machine's nginx on `inner_port` with only `body` in its block.
    let inner_with = |body: String| {
        let dir = tempfile::tempdir().unwrap();
        let conf = nginx_conf(dir.path(), &tls_server_block(inner_port, &leaf, &body));
        (Nginx::start(&conf, inner_port), dir)
    };

    live_fails(
        outer_port,
        "answered with HTTP 404, while the proxy on this machine",
        "a second proxy in front of",
    );
    drop(outer);
    drop(inner);

    // This machine's nginx without the websocket block: a plain forum.
    let plain = inner_with(format!(
        "  root {}/public;\n  location / {{\n    try_files $uri $uri/ =404;\n  }}\n",
        forum.path().display()
    ));
    live_fails(
        inner_port,
        "answers 404 too: it sends the websocket to the forum",
        "add the `map $http_upgrade $type` and `location @ws` blocks",
    );
    drop(plain);

    // This machine's nginx sends /app/ to flarum-ws, but without the
    // upgrade lines: flarum-ws's own 400 comes back, and check names the
    // missing lines instead of blaming a proxy in front.
    let _bare = inner_with(format!(
        "  location /app/ {{\n    proxy_pass http://127.0.0.1:{ws_port};\n  }}\n"
    ));
    live_fails(
        inner_port,
        "flarum-ws itself answered the websocket handshake with HTTP 400",
        "add proxy_http_version 1.1; proxy_set_header Upgrade $http_upgrade;",
    );
    drop(server);
}

/// How long the idle tests leave a tab alone: longer than the 60 s read
/// timeout of the proxies admins already run.
const IDLE: Duration = Duration::from_secs(75);

/// An admin who keeps the Kyrne extension's nginx block (`proxy_read_timeout
/// 60`) in front of flarum-ws: a pusher-js 7 tab (what Flarum's JS uses)
/// left idle for 75 s is not cut and does not reconnect, and the next event
/// reaches it on the same connection.
#[test]
#[ignore = "needs nginx and the npm packages of tests/conformance"]
fn an_idle_tab_stays_connected_through_the_kyrne_extensions_nginx_block() {
    let forum = tempfile::tempdir().unwrap();
    let ws_port = free_port();
    let server = start(behind_nginx(&mut flarum_ws(forum.path()), ws_port).arg("serve"));
    let nginx_port = free_port();
    let conf_dir = tempfile::tempdir().unwrap();
    let conf = nginx_conf(
        conf_dir.path(),
        &common::nginx::kyrne_readme_server(nginx_port, ws_port),
    );
    let _nginx = Nginx::start(&conf, nginx_port);

    let tab = common::idle::IdleTab::open("7", nginx_port, KEY, "public", "newPost", None);
    tab.stays_connected(IDLE);
    let trigger = behind_nginx(&mut flarum_ws(forum.path()), ws_port)
        .args(["trigger", "public", "newPost", r#"{"postId":3}"#])
        .output()
        .unwrap();
    assert!(trigger.status.success());
    let after = tab.until("event");
    assert_eq!(
        after.len(),
        1,
        "the event, and nothing before it: {after:?}"
    );
    assert_eq!(after[0]["data"]["postId"], 3);
    drop(server);
}

/// `check --idle` holds a connection idle through the proxy as a forum page
/// would and reports a proxy that cuts it, with the fix; `check` warns about
/// the same proxy from its configuration file alone. With traffic inside the
/// proxy's timeout, both pass. (Short timeouts stand in for the 60 s ones.)
#[test]
#[ignore = "needs nginx"]
fn check_finds_a_proxy_that_cuts_idle_connections() {
    let pki = Pki::new();
    let leaf = pki.leaf("forum", false);
    let forum = tempfile::tempdir().unwrap();
    let ws_port = free_port();
    let nginx_port = free_port();
    let conf_dir = tempfile::tempdir().unwrap();
    let conf = nginx_conf(
        conf_dir.path(),
        &tls_server_block(
            nginx_port,
            &leaf,
            &format!(
                "  location /app/ {{\n    proxy_pass http://127.0.0.1:{ws_port};\n    proxy_read_timeout 9;\n    proxy_http_version 1.1;\n    proxy_set_header Upgrade $http_upgrade;\n    proxy_set_header Connection 'upgrade';\n  }}\n"
            ),
        ),
    );
    let _nginx = Nginx::start(&conf, nginx_port);
    let site = conf_dir.path().join("site.conf");
    let check = |activity: &str| {
        let mut command = flarum_ws(forum.path());
        behind_nginx(&mut command, ws_port)
            .env("FLARUM_WS_ACTIVITY_TIMEOUT", activity)
            .env("FLARUM_WS_APP_HOST", "localhost")
            .env("SSL_CERT_FILE", &pki.root_pem);
        let via = format!("127.0.0.1:{nginx_port}");
        let site = site.to_str().unwrap();
        common::checking::check_json(
            &mut command,
            &["--idle", "12", "--via", &via, "--nginx-conf", site],
        )
    };

    // pusher-js would ping after 20 s of silence; nginx cuts at 9 s.
    let mut slow = flarum_ws(forum.path());
    behind_nginx(&mut slow, ws_port).env("FLARUM_WS_ACTIVITY_TIMEOUT", "20");
    let server = start(slow.arg("serve"));
    let (code, findings) = check("20");
    assert_eq!(code, 1, "{findings:#?}");
    let idle = common::checking::finding(&findings, "idle");
    common::checking::assert_finding(
        idle,
        "fail",
        "an idle connection was cut after 9 s without a close from flarum-ws",
        "raise the proxy's idle timeout: nginx: proxy_read_timeout 110s;",
    );
    common::checking::assert_in_troubleshooting(idle);
    let timeout = common::checking::finding(&findings, "proxy timeout");
    common::checking::assert_finding(
        timeout,
        "warn",
        &format!(
            "site.conf:7: the block that proxies to flarum-ws (port {ws_port}) has proxy_read_timeout 9 s (line 8)"
        ),
        "set proxy_read_timeout 110s;",
    );
    common::checking::assert_in_troubleshooting(timeout);
    drop(server);

    // Traffic every 2 s: the connection outlives the 12 s and nothing warns.
    let mut quick = flarum_ws(forum.path());
    behind_nginx(&mut quick, ws_port).env("FLARUM_WS_ACTIVITY_TIMEOUT", "2");
    let server = start(quick.arg("serve"));
    let (code, findings) = check("2");
    assert_eq!(code, 0, "{findings:#?}");
    common::checking::assert_finding(
        common::checking::finding(&findings, "idle"),
        "pass",
        "an idle connection stayed open for 12 s",
        "",
    );
    common::checking::assert_finding(
        common::checking::finding(&findings, "proxy timeout"),
        "pass",
        "proxy_read_timeout 9 s is above the keepalive (activity_timeout 2 s)",
        "",
    );
    drop(server);
}

/// `check` asks nginx for the configuration it runs with (`nginx -T`): a
/// `proxy_read_timeout` at `http` level in another file, and a
/// `proxy_pass` to an `upstream` defined there, reach the forum's block in
/// a third file. Reading the files each on its own found nothing to say;
/// a real idle connection through that nginx is cut, and now `check` says
/// why, naming both files.
#[test]
#[ignore = "needs nginx"]
fn check_follows_nginx_s_includes_and_upstreams() {
    let pki = Pki::new();
    let leaf = pki.leaf("forum", false);
    let forum = tempfile::tempdir().unwrap();
    let ws_port = free_port();
    let nginx_port = free_port();
    let conf_dir = tempfile::tempdir().unwrap();
    let d = conf_dir.path().display();
    std::fs::write(
        conf_dir.path().join("forum-server.conf"),
        tls_server_block(
            nginx_port,
            &leaf,
            "  location /app/ {\n    proxy_pass http://flarum_ws;\n    proxy_http_version 1.1;\n    proxy_set_header Upgrade $http_upgrade;\n    proxy_set_header Connection 'upgrade';\n  }\n",
        ),
    )
    .unwrap();
    let conf = nginx_conf(
        conf_dir.path(),
        &format!(
            "proxy_read_timeout 9s;\nupstream flarum_ws {{ server 127.0.0.1:{ws_port}; }}\ninclude {d}/forum-server.conf;\n"
        ),
    );
    let _nginx = Nginx::start(&conf, nginx_port);
    let mut serve = flarum_ws(forum.path());
    behind_nginx(&mut serve, ws_port).env("FLARUM_WS_ACTIVITY_TIMEOUT", "20");
    let server = start(serve.arg("serve"));
    let check = |args: &[&str]| {
        let mut command = flarum_ws(forum.path());
        behind_nginx(&mut command, ws_port)
            .env("FLARUM_WS_ACTIVITY_TIMEOUT", "20")
            .env("FLARUM_WS_APP_HOST", "localhost")
            .env("SSL_CERT_FILE", &pki.root_pem);
        common::checking::check_json(&mut command, args)
    };
    let via = format!("127.0.0.1:{nginx_port}");
    let (_, findings) = check(&[
        "--idle",
        "12",
        "--via",
        &via,
        "--nginx-main",
        conf.to_str().unwrap(),
    ]);
    common::checking::assert_finding(
        common::checking::finding(&findings, "idle"),
        "fail",
        "an idle connection was cut after 9 s",
        "",
    );
    let timeout = common::checking::finding(&findings, "proxy timeout");
    common::checking::assert_finding(
        timeout,
        "warn",
        &format!(
            "{d}/forum-server.conf:7: the block that proxies to flarum-ws (port {ws_port}) has proxy_read_timeout 9 s (inherited from {d}/site.conf:1)"
        ),
        "set proxy_read_timeout 110s;",
    );
    let site = conf_dir.path().join("site.conf");
    let (_, findings) = check(&["--nginx-conf", site.to_str().unwrap()]);
    assert!(
        findings.iter().all(|f| f["check"] != "proxy timeout"),
        "the files read each on its own show no block: {findings:#?}"
    );
    drop(server);
}

/// Issue 34: the Kyrne extension's README block (websockets routed to
/// flarum-ws on 443) with "Reverse Proxy Support" left off. Tabs come
/// through nginx and get their events, so `check` no longer says every tab
/// fails nor skips `--live`: it warns about what is really wrong (the port
/// open in plain ws:// on 0.0.0.0, nginx's address not trusted) with the
/// switch to turn on, and the live round trip through nginx passes.
#[tokio::test]
#[ignore = "needs nginx"]
async fn reverse_proxy_support_off_behind_the_kyrne_block_names_the_real_faults() {
    let pki = Pki::new();
    let leaf = pki.leaf("forum", false);
    let forum = tempfile::tempdir().unwrap();
    let ws_port = free_port();
    let nginx_port = free_port();
    common::checking::kyrne_forum(
        forum.path(),
        "https://localhost",
        ws_port,
        &[
            ("kyrne-websocket.reverse_proxy", "0"),
            ("kyrne-websocket.app_host", "localhost"),
        ],
    )
    .await;
    let conf_dir = tempfile::tempdir().unwrap();
    let kyrne = common::nginx::kyrne_readme_server(nginx_port, ws_port);
    let (map, _) = kyrne.split_once("server {").unwrap();
    let (_, locations) = kyrne.split_once("server_name localhost;\n").unwrap();
    let locations = locations.trim_end().trim_end_matches('}');
    let conf = nginx_conf(
        conf_dir.path(),
        &format!("{map}{}", tls_server_block(nginx_port, &leaf, locations)),
    );
    let _nginx = Nginx::start(&conf, nginx_port);
    let server = start(flarum_ws(forum.path()).arg("serve"));
    let via = format!("127.0.0.1:{nginx_port}");
    let (code, findings) = common::checking::check_json(
        flarum_ws(forum.path()).env("SSL_CERT_FILE", &pki.root_pem),
        &[
            "--live",
            "--via",
            &via,
            "--nginx-main",
            conf.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{findings:#?}");
    common::checking::assert_finding(
        common::checking::finding(&findings, "https"),
        "warn",
        "\"Reverse Proxy Support\" is off: flarum-ws listens on 0.0.0.0",
        "turn on \"Reverse Proxy Support\" on the extension's page",
    );
    assert!(
        findings
            .iter()
            .any(|f| f["check"] == "live" && f["status"] == "pass"),
        "the round trip through nginx: {findings:#?}"
    );
    drop(server);
}

/// A forum under a sub-path of a site that nginx already serves: the
/// snippet is one `location ^~ /app/` block for that site's server block.
/// With it pasted in, nginx accepts the file, the site (its `location /`
/// and a regex location for static files) is still served, and pusher-js
/// reaches flarum-ws through the same port.
#[tokio::test]
#[ignore = "needs nginx and the npm packages of tests/conformance"]
async fn a_forum_under_a_sub_path_gets_one_location_beside_the_site() {
    let pki = Pki::new();
    let leaf = pki.leaf("forum", false);
    let forum = tempfile::tempdir().unwrap();
    let ws_port = free_port();
    let port = ws_port.to_string();
    checking::sqlite_forum(
        forum.path(),
        "https://localhost/forum",
        &[
            ("kyrne-websocket.app_id", APP_ID),
            ("kyrne-websocket.app_key", KEY),
            ("kyrne-websocket.app_secret", SECRET),
            ("kyrne-websocket.app_port", &port),
            ("kyrne-websocket.reverse_proxy", "1"),
        ],
    )
    .await;
    let server = start(flarum_ws(forum.path()).arg("serve"));
    let output = flarum_ws(forum.path())
        .arg("nginx-snippet")
        .output()
        .unwrap();
    let snippet = String::from_utf8(output.stdout).unwrap();
    assert!(
        snippet.contains("location ^~ /app/ {")
            && snippet.contains("the forum under /forum")
            && !snippet.contains("location / {")
            && !snippet.contains("@ws"),
        "{snippet}"
    );

    let site = tempfile::tempdir().unwrap();
    std::fs::write(site.path().join("index.html"), "main site\n").unwrap();
    std::fs::write(site.path().join("app.js"), "// static\n").unwrap();
    let nginx_port = free_port();
    let conf_dir = tempfile::tempdir().unwrap();
    let conf = nginx_conf(
        conf_dir.path(),
        &tls_server_block(
            nginx_port,
            &leaf,
            &format!(
                "  root {};\n  location / {{\n    try_files $uri $uri/ =404;\n  }}\n  location ~* \\.js$ {{\n    add_header X-Static yes;\n  }}\n{snippet}",
                site.path().display()
            ),
        ),
    );
    let _nginx = Nginx::start(&conf, nginx_port);
    let target = Target {
        address: "127.0.0.1".into(),
        port: nginx_port,
        tls: true,
        server_name: "localhost".into(),
        insecure: true,
    };
    assert_eq!(
        request(&target, "GET", "/", String::new()).await.unwrap(),
        (200, "main site\n".to_owned())
    );
    assert_eq!(
        request(&target, "GET", "/app.js", String::new())
            .await
            .unwrap(),
        (200, "// static\n".to_owned())
    );
    pusher_js_through_nginx_gets(
        nginx_port,
        &pki,
        &mut flarum_ws(forum.path()),
        r#"{"postId":4}"#,
    );
    drop(server);
}

/// The snippet `nginx-snippet` prints for a standalone server on `ws_port`,
/// as one plain server block on `listen` (what admins paste into the
/// forum's server block, with the forum's own pages answered 404).
fn snippet_server_block(dir: &Path, ws_port: u16, listen: u16) -> String {
    let snippet = succeed(behind_nginx(&mut flarum_ws(dir), ws_port).arg("nginx-snippet"));
    let (map, rest) = snippet
        .split_once("# Inside")
        .expect("the snippet's map part");
    let locations: String = rest
        .lines()
        .skip(1)
        .take_while(|line| !line.starts_with("# In "))
        .collect::<Vec<_>>()
        .join("\n");
    format!(
        "{map}\nserver {{\n  listen 127.0.0.1:{listen};\n  server_name localhost;\n  location @web {{\n    return 404;\n  }}\n{locations}\n}}\n"
    )
}

/// Opens websockets through nginx on `port`, each claiming a new client
/// address in every forwarding header; returns how many were admitted
/// and the first refusal's message.
async fn connect_claiming_new_addresses(port: u16, count: u8) -> (usize, Option<String>) {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut admitted = 0;
    let mut refusal = None;
    let mut open = Vec::new();
    for n in 0..count {
        let mut request = format!("ws://127.0.0.1:{port}/app/{KEY}?protocol=7")
            .into_client_request()
            .unwrap();
        let claimed = format!("203.0.113.{n}");
        for header in ["x-real-ip", "x-forwarded-for"] {
            request
                .headers_mut()
                .insert(header, claimed.parse().unwrap());
        }
        request
            .headers_mut()
            .insert("forwarded", format!("for={claimed}").parse().unwrap());
        let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
        let first = next_json(&mut ws).await.expect("a first frame");
        if first["event"] == "pusher:connection_established" {
            admitted += 1;
            open.push(ws);
        } else if refusal.is_none() {
            refusal = data_of(&first)["message"].as_str().map(str::to_owned);
        }
    }
    (admitted, refusal)
}

/// Issue 35, forwarding headers: flarum-ws believes only the header its
/// trusted proxy overwrites (X-Real-IP, which `nginx-snippet`'s block sets
/// to `$remote_addr`). Through that block, a client that claims a new
/// address in X-Real-IP, X-Forwarded-For and Forwarded on each connection
/// is still one address: past the high-water mark (9 of 10 places) it is
/// refused, named as nginx saw it. Through the Kyrne extension's README
/// block, which sets no address header, the client's own X-Real-IP arrives
/// untouched: every claim gets in, and `check` reads that block and says
/// so, with the line to add; after adding it, the claims fail there too.
#[tokio::test]
#[ignore = "needs nginx"]
async fn a_client_behind_nginx_cannot_name_itself_a_new_address() {
    let dir = tempfile::tempdir().unwrap();
    let ws_port = free_port();
    let limited = |command: &mut Command| {
        command.envs([
            ("FLARUM_WS_MAX_CONNECTIONS", "10"),
            ("FLARUM_WS_MAX_CONNECTIONS_PER_IP", "2"),
        ]);
    };
    let mut serve = flarum_ws(dir.path());
    limited(behind_nginx(&mut serve, ws_port).arg("serve"));
    let server = start(&mut serve);

    // flarum-ws's own snippet.
    let nginx_port = free_port();
    let conf_dir = tempfile::tempdir().unwrap();
    let conf = nginx_conf(
        conf_dir.path(),
        &snippet_server_block(dir.path(), ws_port, nginx_port),
    );
    let nginx = Nginx::start(&conf, nginx_port);
    let (admitted, refusal) = connect_claiming_new_addresses(nginx_port, 12).await;
    assert_eq!(admitted, 9, "{refusal:?}");
    let refusal = refusal.expect("a refusal past the high-water mark");
    assert!(refusal.contains("127.0.0.1 already has 9"), "{refusal}");
    let mut check = flarum_ws(dir.path());
    limited(behind_nginx(&mut check, ws_port));
    let (_, findings) = checking::check_json(
        &mut check,
        &[
            "--nginx-conf",
            conf_dir.path().join("site.conf").to_str().unwrap(),
        ],
    );
    checking::assert_finding(
        checking::finding(&findings, "client address"),
        "pass",
        "names the client in X-Real-IP",
        "",
    );
    drop(nginx);
    // Wait for the admitted connections to be let go.
    std::thread::sleep(Duration::from_millis(500));

    // The Kyrne extension's README block: no address header set.
    let kyrne_dir = tempfile::tempdir().unwrap();
    let kyrne_port = free_port();
    let kyrne_conf = nginx_conf(
        kyrne_dir.path(),
        &common::nginx::kyrne_readme_server(kyrne_port, ws_port),
    );
    let kyrne = Nginx::start(&kyrne_conf, kyrne_port);
    let (admitted, _) = connect_claiming_new_addresses(kyrne_port, 10).await;
    assert_eq!(admitted, 10, "every forged X-Real-IP is believed");
    let mut check = flarum_ws(dir.path());
    limited(behind_nginx(&mut check, ws_port));
    let site = kyrne_dir.path().join("site.conf");
    let (_, findings) = checking::check_json(&mut check, &["--nginx-conf", site.to_str().unwrap()]);
    let warned = checking::finding(&findings, "client address");
    checking::assert_finding(
        warned,
        "warn",
        "does not set X-Real-IP to the client's address",
        "add proxy_set_header X-Real-IP $remote_addr; to that block",
    );
    checking::assert_in_troubleshooting(warned);
    drop(kyrne);
    std::thread::sleep(Duration::from_millis(500));

    // The fix applied: the forged claims are one address again.
    let fixed = std::fs::read_to_string(&site).unwrap().replace(
        "proxy_set_header Host  $host;",
        "proxy_set_header Host  $host;\n\t    proxy_set_header X-Real-IP $remote_addr;",
    );
    std::fs::write(&site, fixed).unwrap();
    let kyrne = Nginx::start(&kyrne_conf, kyrne_port);
    let (admitted, refusal) = connect_claiming_new_addresses(kyrne_port, 12).await;
    assert_eq!(admitted, 9, "{refusal:?}");
    drop(kyrne);
    drop(server);
}
