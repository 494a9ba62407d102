//! `flarum-ws check`: each problem it claims to detect, set up for real, with
//! the exit codes (0 all good, 1 something failed).

mod common;

use std::path::Path;
use std::process::Command;

use common::pki::Pki;
use common::process::{flarum_ws, free_port, start};
use common::*;
use serde_json::Value;

/// Runs `check --json` with `envs` (plus credentials) and returns the exit
/// code and the findings by check name.
fn check(dir: &Path, envs: &[(&str, String)], args: &[&str]) -> (i32, Vec<Value>) {
    let mut command: Command = flarum_ws(dir);
    command.envs([
        ("FLARUM_WS_APP_ID", APP_ID),
        ("FLARUM_WS_APP_KEY", KEY),
        ("FLARUM_WS_APP_SECRET", SECRET),
    ]);
    for (name, value) in envs {
        command.env(name, value);
    }
    check_json(&mut command, args)
}

/// Runs `command` as `check --json ARGS`; the exit code and the findings.
fn check_json(command: &mut Command, args: &[&str]) -> (i32, Vec<Value>) {
    let output = command
        .args(["check", "--json"])
        .args(args)
        .output()
        .unwrap();
    for stream in [&output.stdout, &output.stderr] {
        let text = String::from_utf8_lossy(stream);
        assert!(
            !text.contains(SECRET),
            "the app secret in check's output: {text}"
        );
    }
    let report: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|_| panic!("JSON report: {}", String::from_utf8_lossy(&output.stdout)));
    assert_eq!(report["ok"], output.status.code() == Some(0));
    (
        output.status.code().unwrap(),
        report["checks"].as_array().unwrap().clone(),
    )
}

fn finding<'a>(findings: &'a [Value], name: &str) -> &'a Value {
    findings
        .iter()
        .find(|f| f["check"] == name)
        .unwrap_or_else(|| panic!("no {name} finding in {findings:?}"))
}

fn tls_env(cert: &Path, key: &Path, port: u16) -> Vec<(&'static str, String)> {
    vec![
        ("FLARUM_WS_TLS_CERT", cert.display().to_string()),
        ("FLARUM_WS_TLS_KEY", key.display().to_string()),
        ("FLARUM_WS_PORT", port.to_string()),
        ("FLARUM_WS_APP_HOST", "localhost".into()),
    ]
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
fn civil_from_days(days: i64) -> (i32, u8, u8) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let year = (yoe + era * 400 + i64::from(month <= 2)) as i32;
    (year, month, day)
}

#[tokio::test]
async fn a_good_tls_setup_passes_including_the_live_round_trip() {
    let pki = Pki::new();
    let leaf = pki.leaf("forum", false);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let envs = tls_env(&leaf.full_chain, &leaf.key, port);
    let mut server_command = flarum_ws(dir.path());
    server_command.envs([
        ("FLARUM_WS_APP_ID", APP_ID),
        ("FLARUM_WS_APP_KEY", KEY),
        ("FLARUM_WS_APP_SECRET", SECRET),
    ]);
    for (name, value) in &envs {
        server_command.env(name, value);
    }
    let server = start(server_command.arg("serve"));

    let mut with_ca = envs.clone();
    with_ca.push(("SSL_CERT_FILE", pki.root_pem.display().to_string()));
    let via = format!("127.0.0.1:{port}");
    let (code, findings) = check(dir.path(), &with_ca, &["--live", "--via", &via]);
    assert_eq!(code, 0, "{findings:#?}");
    let port_finding = finding(&findings, "port");
    assert!(
        port_finding["message"]
            .as_str()
            .unwrap()
            .contains("running flarum-ws"),
        "{port_finding}"
    );
    for name in [
        "certificate",
        "key matches",
        "chain",
        "expiry",
        "names",
        "self-signed",
        "live",
    ] {
        assert_eq!(
            finding(&findings, name)["status"],
            "pass",
            "{name}: {findings:#?}"
        );
    }
    // A port Cloudflare does not proxy is pointed out, without failing.
    assert_eq!(finding(&findings, "cloudflare")["status"], "warn");
    drop(server);

    // The same check with the server stopped: the live check says why.
    let (code, findings) = check(dir.path(), &with_ca, &["--live", "--via", &via]);
    assert_eq!(code, 1);
    let live = finding(&findings, "live");
    assert_eq!(live["status"], "fail");
    assert!(
        live["fix"]
            .as_str()
            .unwrap()
            .contains("is flarum-ws running"),
        "{live}"
    );

    // Human-readable output carries the symbols and the fix.
    let output = flarum_ws(dir.path())
        .envs([
            ("FLARUM_WS_APP_ID", APP_ID),
            ("FLARUM_WS_APP_KEY", KEY),
            ("FLARUM_WS_APP_SECRET", SECRET),
        ])
        .envs(with_ca.iter().map(|(k, v)| (*k, v.as_str())))
        .args(["check", "--live", "--via", &via])
        .output()
        .unwrap();
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(
        text.contains("✓ chain") && text.contains("✗ live") && text.contains("    fix: "),
        "{text}"
    );
}

#[test]
fn certificate_problems_are_each_detected() {
    let pki = Pki::new();
    let good = pki.leaf("forum", false);
    let other = pki.leaf("other", false);
    let expired = pki.leaf("expired", true);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();

    let (code, findings) = check(
        dir.path(),
        &tls_env(&good.full_chain, &other.key, port),
        &[],
    );
    assert_eq!(code, 1);
    assert_eq!(finding(&findings, "key matches")["status"], "fail");

    let (code, findings) = check(dir.path(), &tls_env(&good.cert_only, &good.key, port), &[]);
    assert_eq!(code, 1);
    let chain = finding(&findings, "chain");
    assert_eq!(chain["status"], "fail");
    assert!(chain["fix"].as_str().unwrap().contains("fullchain.pem"));

    let (code, findings) = check(
        dir.path(),
        &tls_env(&expired.full_chain, &expired.key, port),
        &[],
    );
    assert_eq!(code, 1);
    assert_eq!(finding(&findings, "expiry")["status"], "fail");

    let mut wrong_host = tls_env(&good.full_chain, &good.key, port);
    wrong_host.push(("FLARUM_WS_APP_HOST", "forum.example".into()));
    let (code, findings) = check(dir.path(), &wrong_host, &[]);
    assert_eq!(code, 1);
    assert!(
        finding(&findings, "names")["message"]
            .as_str()
            .unwrap()
            .contains("forum.example")
    );

    // Expiring in five days: a warning, not a failure.
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    let days = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        / 86_400;
    let (y, m, d) = civil_from_days(days + 5);
    params.not_after = rcgen::date_time_ymd(y, m, d);
    let key = rcgen::KeyPair::generate().unwrap();
    let soon = params.self_signed(&key).unwrap();
    std::fs::write(pki.path("soon.pem"), soon.pem()).unwrap();
    std::fs::write(pki.path("soon.key"), key.serialize_pem()).unwrap();
    let mut envs = tls_env(&pki.path("soon.pem"), &pki.path("soon.key"), port);
    envs.push(("FLARUM_WS_SELF_SIGNED", "true".into()));
    let (_, findings) = check(dir.path(), &envs, &[]);
    assert_eq!(
        finding(&findings, "expiry")["status"],
        "warn",
        "{findings:#?}"
    );
    assert_eq!(finding(&findings, "self-signed")["status"], "pass");

    // The same self-signed certificate without the switch.
    let envs = tls_env(&pki.path("soon.pem"), &pki.path("soon.key"), port);
    let (code, findings) = check(dir.path(), &envs, &[]);
    assert_eq!(code, 1);
    assert_eq!(finding(&findings, "self-signed")["status"], "fail");
}

#[test]
fn ports_bind_addresses_and_the_forum_database() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let (code, findings) = check(dir.path(), &[("FLARUM_WS_PORT", port.to_string())], &[]);
    assert_eq!(code, 1);
    let held = finding(&findings, "port");
    assert!(
        held["message"]
            .as_str()
            .unwrap()
            .contains(&format!("(pid {})", std::process::id())),
        "{held}"
    );
    assert!(
        held["message"]
            .as_str()
            .unwrap()
            .contains("Failed to listen"),
        "{held}"
    );

    let free = free_port().to_string();
    let (code, findings) = check(
        dir.path(),
        &[
            ("FLARUM_WS_PORT", free.clone()),
            ("FLARUM_WS_REVERSE_PROXY", "true".into()),
            ("FLARUM_WS_HOST", "0.0.0.0".into()),
        ],
        &[],
    );
    assert_eq!(code, 0);
    assert_eq!(finding(&findings, "bind address")["status"], "warn");
    assert_eq!(finding(&findings, "origins")["status"], "warn");
    let (_, findings) = check(
        dir.path(),
        &[
            ("FLARUM_WS_PORT", free.clone()),
            ("FLARUM_WS_ALLOWED_ORIGINS", "https://forum.example".into()),
        ],
        &[],
    );
    assert_eq!(finding(&findings, "origins")["status"], "pass");
    let (code, findings) = check(
        dir.path(),
        &[
            ("FLARUM_WS_PORT", free),
            ("FLARUM_WS_HOST", "127.0.0.1".into()),
        ],
        &[],
    );
    assert_eq!(code, 1);
    assert_eq!(finding(&findings, "bind address")["status"], "fail");

    // A forum whose database cannot be opened.
    std::fs::write(
        dir.path().join("config.php"),
        "<?php return array (\n  'database' => \n  array (\n    'driver' => 'sqlite',\n    'database' => 'storage/missing.sqlite',\n  ),\n  'url' => 'https://forum.example',\n);",
    )
    .unwrap();
    let (code, findings) = check(dir.path(), &[], &[]);
    assert_eq!(code, 1);
    assert_eq!(finding(&findings, "config.php")["status"], "pass");
    assert_eq!(finding(&findings, "database")["status"], "fail");
}

/// A redis-server on a free loopback port, killed when dropped.
struct RedisServer {
    child: std::process::Child,
    port: u16,
}

impl RedisServer {
    fn start() -> Self {
        let port = free_port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server is needed (apt-get install redis-server)");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Self { child, port }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
#[ignore = "needs redis-server"]
fn reports_whether_redis_answers() {
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start();
    let url = format!("redis://127.0.0.1:{}", redis.port);
    let (_, findings) = check(dir.path(), &[("FLARUM_WS_REDIS_URL", url)], &[]);
    let redis_finding = finding(&findings, "redis");
    assert_eq!(redis_finding["status"], "pass", "{redis_finding}");
    assert!(
        redis_finding["message"]
            .as_str()
            .unwrap()
            .contains("0 flarum-ws node(s) listen on flarum-ws:bus"),
        "{redis_finding}"
    );

    let closed = format!("redis://127.0.0.1:{}", free_port());
    let (code, findings) = check(dir.path(), &[("FLARUM_WS_REDIS_URL", closed)], &[]);
    assert_eq!(code, 1);
    let redis_finding = finding(&findings, "redis");
    assert_eq!(redis_finding["status"], "fail", "{redis_finding}");
    assert!(redis_finding["fix"].as_str().unwrap().contains("redis_url"));

    let (_, findings) = check(
        dir.path(),
        &[("FLARUM_WS_REDIS_URL", "http://nope".into())],
        &[],
    );
    assert_eq!(finding(&findings, "redis")["status"], "fail");
}

/// `--redis-url` is read by `check` as by `serve` (it was once accepted and
/// ignored): a flag naming a port where nothing listens fails the check.
#[test]
fn the_redis_url_flag_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let closed = format!("redis://127.0.0.1:{}", free_port());
    let (code, findings) = check(dir.path(), &[], &["--redis-url", &closed]);
    assert_eq!(code, 1);
    let redis_finding = finding(&findings, "redis");
    assert_eq!(redis_finding["status"], "fail", "{redis_finding}");
    assert!(
        redis_finding["message"]
            .as_str()
            .unwrap()
            .contains(&format!("127.0.0.1:{}", &closed[18..])),
        "{redis_finding}"
    );
}

/// A forum root on SQLite, as Flarum's installer leaves it, with `url` and
/// the extension's `settings` rows.
async fn sqlite_forum(root: &Path, url: &str, settings: &[(&str, &str)]) {
    use sqlx::Connection;
    std::fs::create_dir_all(root.join("storage")).unwrap();
    std::fs::write(
        root.join("config.php"),
        format!(
            "<?php return array (\n  'debug' => false,\n  'database' => \n  array (\n    'driver' => 'sqlite',\n    'database' => 'storage/flarum.sqlite',\n    'prefix' => '',\n  ),\n  'url' => '{url}',\n);"
        ),
    )
    .unwrap();
    sqlx::any::install_default_drivers();
    let path = root.join("storage/flarum.sqlite");
    let mut db = sqlx::AnyConnection::connect(&format!("sqlite://{}?mode=rwc", path.display()))
        .await
        .unwrap();
    sqlx::query(
        "CREATE TABLE settings (\"key\" varchar(100) NOT NULL PRIMARY KEY, \"value\" text NULL)",
    )
    .execute(&mut db)
    .await
    .unwrap();
    for (key, value) in settings {
        sqlx::query("INSERT INTO settings VALUES ($1, $2)")
            .bind(*key)
            .bind(*value)
            .execute(&mut db)
            .await
            .unwrap();
    }
    db.close().await.unwrap();
}

/// An https forum served on a plain port without a proxy cannot work:
/// browsers on an https page only open wss://. `check` fails it with the
/// fix, passes it once a proxy is in front, and `serve` says it once, at
/// warn level, when such a browser knocks.
#[tokio::test]
async fn an_https_forum_on_a_plain_port_fails_and_serve_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port().to_string();
    let mut rows = vec![
        ("kyrne-websocket.app_id", "77"),
        (
            "kyrne-websocket.app_key",
            "forumkey0123456789abcdefghijklmn",
        ),
        (
            "kyrne-websocket.app_secret",
            "forumsecret0123456789abcdefghijk",
        ),
        ("kyrne-websocket.app_port", port.as_str()),
    ];
    sqlite_forum(dir.path(), "https://forum.example", &rows).await;
    let (code, findings) = check_json(&mut flarum_ws(dir.path()), &[]);
    assert_eq!(code, 1, "{findings:?}");
    let https = finding(&findings, "https");
    assert_eq!(https["status"], "fail", "{https}");
    assert!(
        https["message"]
            .as_str()
            .unwrap()
            .contains("only open wss://"),
        "{https}"
    );
    assert!(
        https["fix"]
            .as_str()
            .unwrap()
            .contains("Reverse Proxy Support"),
        "{https}"
    );

    // serve in the same root: a TLS handshake on the plain port is named once.
    let mut server = start(flarum_ws(dir.path()).args(["serve"]));
    for _ in 0..3 {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap();
        use std::io::{Read, Write};
        stream
            .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
            .unwrap();
        let _ = stream.read(&mut [0u8; 16]);
    }
    let log = server.stop_cleanly();
    let warned: Vec<&String> = log
        .iter()
        .filter(|line| {
            line.contains("WARN") && line.contains("TLS handshake (wss://) on this plain port")
        })
        .collect();
    assert_eq!(warned.len(), 1, "{log:?}");

    // With the extension's reverse-proxy switch on, the same forum is fine.
    std::fs::remove_dir_all(dir.path().join("storage")).unwrap();
    rows.push(("kyrne-websocket.reverse_proxy", "1"));
    sqlite_forum(dir.path(), "https://forum.example", &rows).await;
    let (_, findings) = check_json(&mut flarum_ws(dir.path()), &[]);
    assert_eq!(
        finding(&findings, "https")["status"],
        "pass",
        "{findings:?}"
    );
}
