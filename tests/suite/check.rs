//! `flarum-ws check`: each problem it claims to detect, set up for real, with
//! the exit codes (0 all good, 1 something failed).

use crate::common;

use std::path::Path;
use std::process::Command;

use crate::common::checking::*;
use crate::common::pki::Pki;
use crate::common::process::{flarum_ws, free_port, start};
use crate::common::redis::RedisServer;
use crate::common::*;
use serde_json::Value;

/// Runs `check --json` with `envs` (plus credentials) and returns the exit
/// code and the findings by check name.
fn check(dir: &Path, envs: &[(&str, String)], args: &[&str]) -> (i32, Vec<Value>) {
    check_json(&mut credentialed(dir, envs), args)
}

/// `flarum-ws` in `dir` with the test credentials and `envs`.
fn credentialed(dir: &Path, envs: &[(&str, String)]) -> Command {
    let mut command = flarum_ws(dir);
    command.envs(CREDENTIALS);
    command.envs(envs.iter().map(|(k, v)| (*k, v.as_str())));
    command
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
    server_command.envs(CREDENTIALS);
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
    // A port Cloudflare does not proxy, on a name that is not Cloudflare's
    // (localhost): said as a fact about the address, without warning.
    assert_finding(
        finding(&findings, "cloudflare"),
        "pass",
        "localhost resolves to",
        "",
    );
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
        .envs(CREDENTIALS)
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
    assert_in_troubleshooting(finding(&findings, "expiry"));

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

/// `check`'s finding on the Redis of `envs`: its status, message and fix.
fn judge_redis(dir: &Path, envs: &[(&str, String)]) -> (String, String, String) {
    let (_, findings) = check(dir, envs, &[]);
    let found = finding(&findings, "redis");
    let text = |key: &str| found[key].as_str().unwrap_or_default().to_owned();
    (text("status"), text("message"), text("fix"))
}

/// Issue 37: a managed Redis speaks TLS with a private CA, and has ACL
/// users. `check` passes the right settings and names each way they go
/// wrong: no CA for the certificate, a wrong password, `rediss://` on the
/// plain port, a user without pub/sub, a half-given client certificate.
#[test]
#[ignore = "needs redis-server"]
fn judges_a_tls_redis_and_names_each_way_it_fails() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    let leaf = pki.leaf("redis", false);
    let redis = RedisServer::start_tls(&pki, &leaf, "s3cret", false);
    let tls_port = redis.tls_port.unwrap();
    let ca = (
        "FLARUM_WS_REDIS_CA_FILE",
        pki.root_pem.display().to_string(),
    );
    let url = |auth: &str, port: u16| {
        (
            "FLARUM_WS_REDIS_URL",
            format!("rediss://{auth}@127.0.0.1:{port}"),
        )
    };
    let judged = |envs: &[(&str, String)]| {
        let (status, message, _) = judge_redis(dir.path(), envs);
        (status, message)
    };

    let (status, message) = judged(&[url(":s3cret", tls_port), ca.clone()]);
    assert_eq!(status, "pass", "{message}");
    assert!(
        message.contains("over TLS (certificate verified)"),
        "{message}"
    );
    assert!(
        !message.contains("s3cret"),
        "the password is not shown: {message}"
    );

    let (status, message) = judged(&[url(":s3cret", tls_port)]);
    assert_eq!(status, "fail");
    assert!(
        message.contains("set redis_ca_file to the CA that signed it"),
        "{message}"
    );

    let (status, message) = judged(&[url(":wrong", tls_port), ca.clone()]);
    assert_eq!(status, "fail");
    assert!(
        message.contains("refused the user name or password"),
        "{message}"
    );

    let (status, message) = judged(&[url(":s3cret", redis.port), ca.clone()]);
    assert_eq!(status, "fail");
    assert!(message.contains("speaks plain Redis, not TLS"), "{message}");

    // An ACL user who may PING but not use pub/sub.
    assert_eq!(
        redis.command(
            Some("s3cret"),
            &["ACL", "SETUSER", "pinger", "on", ">pw", "+ping", "+pubsub"]
        ),
        "OK"
    );
    let (status, message) = judged(&[url("pinger:pw", tls_port), ca.clone()]);
    assert_eq!(status, "fail", "{message}");
    assert!(
        message.contains("may not run what a node needs"),
        "{message}"
    );

    let (status, message) = judged(&[
        url(":s3cret", tls_port),
        ca,
        (
            "FLARUM_WS_REDIS_CLIENT_CERT",
            leaf.cert_only.display().to_string(),
        ),
    ]);
    assert_eq!(status, "fail");
    assert!(message.contains("go together"), "{message}");
}

/// The hints `check` gives for the other ways a Redis connection fails, each
/// produced by a real redis-server (or sentinel) refusing for that reason.
#[test]
#[ignore = "needs redis-server"]
fn names_a_missing_password_a_wrong_host_name_a_missing_client_certificate_and_an_unknown_master() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    let judged = |envs: &[(&str, String)]| {
        let (status, message, _) = judge_redis(dir.path(), envs);
        (status, message)
    };
    let ca = (
        "FLARUM_WS_REDIS_CA_FILE",
        pki.root_pem.display().to_string(),
    );

    // A password asked for, none given (NOAUTH).
    let leaf = pki.leaf("redis", false);
    let redis = RedisServer::start_tls(&pki, &leaf, "s3cret", true);
    let (status, message) = judged(&[(
        "FLARUM_WS_REDIS_URL",
        format!("redis://127.0.0.1:{}", redis.port),
    )]);
    assert_eq!(status, "fail", "{message}");
    assert!(message.contains("Redis asks for a password"), "{message}");

    // A client certificate asked for (tls-auth-clients yes), none given.
    let tls_url = format!("rediss://:s3cret@127.0.0.1:{}", redis.tls_port.unwrap());
    let (status, message) = judged(&[("FLARUM_WS_REDIS_URL", tls_url.clone()), ca.clone()]);
    assert_eq!(status, "fail", "{message}");
    assert!(
        message.contains("asks for a client certificate"),
        "{message}"
    );
    // One without the intermediate that signed it: Redis cannot verify it.
    let with_client_cert = |cert: &Path| {
        judged(&[
            ("FLARUM_WS_REDIS_URL", tls_url.clone()),
            ca.clone(),
            ("FLARUM_WS_REDIS_CLIENT_CERT", cert.display().to_string()),
            ("FLARUM_WS_REDIS_CLIENT_KEY", leaf.key.display().to_string()),
        ])
    };
    let (status, message) = with_client_cert(&leaf.cert_only);
    assert_eq!(status, "fail", "{message}");
    assert!(
        message.contains("did not accept the client certificate"),
        "{message}"
    );
    // With its chain, it passes.
    let (status, message) = with_client_cert(&leaf.full_chain);
    assert_eq!(status, "pass", "{message}");

    // A certificate for another host name.
    let elsewhere = pki.leaf_for("redis-elsewhere", &["redis.example"], false);
    let other = RedisServer::start_tls(&pki, &elsewhere, "s3cret", false);
    let (status, message) = judged(&[
        (
            "FLARUM_WS_REDIS_URL",
            format!("rediss://:s3cret@127.0.0.1:{}", other.tls_port.unwrap()),
        ),
        ca,
    ]);
    assert_eq!(status, "fail", "{message}");
    assert!(
        message.contains("not for the host in redis_url"),
        "{message}"
    );

    // Sentinels that watch no master of the name given.
    let master = RedisServer::start();
    let sentinels = common::redis::Sentinels::start(master.port);
    let url = sentinels.url().replace("/mymaster", "/othermaster");
    let (status, message) = judged(&[("FLARUM_WS_REDIS_URL", url)]);
    assert_eq!(status, "fail", "{message}");
    assert!(
        message.contains("no sentinel answered with a master of that name"),
        "{message}"
    );
}

/// A Redis Cluster is judged by asking it: its state and shards, the nodes
/// listening on its shard channels, plainly and over TLS; `redis://` to one
/// of its nodes works but is named as not sharded.
#[test]
#[ignore = "needs the shared Redis Cluster (tests/services/start.sh)"]
fn judges_a_redis_cluster_by_asking_it() {
    let dir = tempfile::tempdir().unwrap();
    let seeds = common::databases::service_var("TEST_REDIS_CLUSTER");
    let judged = |url: String| judge_redis(dir.path(), &[("FLARUM_WS_REDIS_URL", url)]);

    let (status, message, _) = judged(format!("redis+cluster://{seeds}"));
    assert_eq!(status, "pass", "{message}");
    assert!(
        message.contains("a Redis Cluster of 3 shards (3 masters, 3 replicas), cluster_state:ok"),
        "{message}"
    );
    assert!(
        message.contains("listen on its 16 shard channels flarum-ws:bus:0 to flarum-ws:bus:15"),
        "{message}"
    );

    let one = seeds.split(',').next().unwrap();
    let (status, message, fix) = judged(format!("redis://{one}"));
    assert_eq!(status, "warn", "{message}");
    assert!(message.contains("a node of a Redis Cluster"), "{message}");
    assert!(fix.contains("redis+cluster://"), "{fix}");

    // Over TLS, its nodes asking for a client certificate.
    let tls_seeds = common::databases::service_var("TEST_REDIS_CLUSTER_TLS");
    let tls_dir = Path::new(&common::databases::service_var("TEST_REDIS_CLUSTER_DIR")).join("tls");
    let file = |name: &str| tls_dir.join(name).display().to_string();
    let over_tls = |client_cert: bool| {
        let mut envs = vec![
            (
                "FLARUM_WS_REDIS_URL",
                format!("rediss+cluster://{tls_seeds}"),
            ),
            ("FLARUM_WS_REDIS_CA_FILE", file("ca.pem")),
        ];
        if client_cert {
            envs.push(("FLARUM_WS_REDIS_CLIENT_CERT", file("client.pem")));
            envs.push(("FLARUM_WS_REDIS_CLIENT_KEY", file("client.key")));
        }
        judge_redis(dir.path(), &envs)
    };
    let (status, message, _) = over_tls(true);
    assert_eq!(status, "pass", "{message}");
    assert!(
        message.contains("a Redis Cluster of 3 shards (3 masters, 3 replicas), cluster_state:ok, answers, over TLS (certificate verified)"),
        "{message}"
    );
    let (status, message, _) = over_tls(false);
    assert_eq!(status, "fail", "{message}");
    assert!(
        message.contains("asks for a client certificate"),
        "{message}"
    );

    let single = RedisServer::start();
    let (status, message, _) = judged(format!("redis+cluster://127.0.0.1:{}", single.port));
    assert_eq!(status, "fail", "{message}");
    assert!(message.contains("is not a Redis Cluster"), "{message}");

    let closed = free_port();
    let (status, message, _) = judged(format!("redis+cluster://127.0.0.1:{closed}"));
    assert_eq!(status, "fail", "{message}");
    let (status, message, _) = judged(format!("redis+cluster://{one}/2"));
    assert_eq!(status, "fail", "{message}");
    assert!(message.contains("only database 0"), "{message}");
}

/// `check --live` on a cluster stands in for another node on its Redis: the
/// browser's node must deliver what check publishes there, and the node the
/// forum reached must publish the forum's event there; on one Redis server
/// and on the shared Redis Cluster. A node on another channel prefix hears
/// neither, and check says so.
#[test]
#[ignore = "needs redis-server and the shared Redis Cluster (tests/services/start.sh)"]
fn live_on_a_cluster_shows_both_directions_through_redis() {
    let dir = tempfile::tempdir().unwrap();
    let plain = RedisServer::start();
    let seeds = common::databases::service_var("TEST_REDIS_CLUSTER");
    let prefix = format!("live-check-{}", std::process::id());
    for url in [
        format!("redis://127.0.0.1:{}", plain.port),
        format!("redis+cluster://{seeds}"),
    ] {
        let port = free_port();
        let envs = |prefix: &str| {
            vec![
                ("FLARUM_WS_PORT", port.to_string()),
                ("FLARUM_WS_REDIS_URL", url.clone()),
                ("FLARUM_WS_REDIS_PREFIX", prefix.to_owned()),
            ]
        };
        let mut node = start(credentialed(dir.path(), &envs(&prefix)).args(["serve"]));
        node.wait_for_line("Connected to Redis", std::time::Duration::from_secs(10));
        let (code, findings) = check(dir.path(), &envs(&prefix), &["--live"]);
        let across = finding(&findings, "live cluster");
        assert_eq!(across["status"], "pass", "{url}: {findings:?}");
        assert!(
            across["message"]
                .as_str()
                .unwrap()
                .contains("published the forum's event there for them"),
            "{across}"
        );
        assert_eq!(code, 0, "{url}: {findings:?}");

        let (code, findings) = check(dir.path(), &envs("another-forum"), &["--live"]);
        assert_eq!(code, 1, "{url}: {findings:?}");
        let across = finding(&findings, "live cluster");
        assert_eq!(across["status"], "fail", "{url}: {across}");
        assert!(
            across["message"]
                .as_str()
                .unwrap()
                .contains("did not reach the browser"),
            "{across}"
        );
        node.stop_cleanly();
    }
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

/// An https forum served on a plain port without a proxy cannot work:
/// browsers on an https page only open wss://. `check` fails it with the
/// fix, passes it once a proxy is in front, and `serve` says it once, at
/// warn level, when such a browser knocks.
#[tokio::test]
async fn an_https_forum_on_a_plain_port_fails_and_serve_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    kyrne_forum(dir.path(), "https://forum.example", port, &[]).await;
    let (code, findings) = check_json(&mut flarum_ws(dir.path()), &[]);
    assert_eq!(code, 1, "{findings:?}");
    let https = finding(&findings, "https");
    assert_eq!(https["status"], "fail", "{https}");
    assert_in_troubleshooting(https);
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
    kyrne_forum(
        dir.path(),
        "https://forum.example",
        port,
        &[("kyrne-websocket.reverse_proxy", "1")],
    )
    .await;
    let (_, findings) = check_json(&mut flarum_ws(dir.path()), &[]);
    assert_eq!(
        finding(&findings, "https")["status"],
        "pass",
        "{findings:?}"
    );
}

/// The Kyrne extension's "Force secure" switch on an http forum: its pages
/// open wss:// and its PHP side posts over https://, so a plain port fails,
/// `--live` included (the probe takes the browsers' wss://).
#[tokio::test]
async fn force_secure_on_an_http_forum_needs_tls() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let forced = |switch| {
        [
            ("kyrne-websocket.app_host", "127.0.0.1"),
            ("kyrne-websocket.force_secure", switch),
        ]
    };
    kyrne_forum(dir.path(), "http://forum.example", port, &forced("1")).await;
    let mut server = start(flarum_ws(dir.path()).args(["serve"]));
    let (code, findings) = check_json(&mut flarum_ws(dir.path()), &["--live"]);
    assert_eq!(code, 1, "{findings:?}");
    let https = finding(&findings, "https");
    assert_eq!(https["status"], "fail", "{https}");
    assert!(
        https["message"]
            .as_str()
            .unwrap()
            .contains("\"Force secure\" switch is on"),
        "{https}"
    );
    assert_in_troubleshooting(https);
    let live = finding(&findings, "live");
    assert_eq!(live["status"], "fail", "{live}");

    // Switched off, the same plain port passes, the live round trip over ws://.
    server.stop_cleanly();
    std::fs::remove_dir_all(dir.path().join("storage")).unwrap();
    kyrne_forum(dir.path(), "http://forum.example", port, &forced("0")).await;
    let mut server = start(flarum_ws(dir.path()).args(["serve"]));
    let (_, findings) = check_json(&mut flarum_ws(dir.path()), &["--live"]);
    assert!(
        !findings.iter().any(|f| f["check"] == "https"),
        "{findings:?}"
    );
    let live = finding(&findings, "live");
    assert_eq!(live["status"], "pass", "{findings:?}");
    assert!(
        live["message"].as_str().unwrap().contains("ws://127.0.0.1"),
        "{live}"
    );
    server.stop_cleanly();
}

/// Two forums configured for the same port: the second forum's `check`
/// names the other forum the running server serves (app id, key, root),
/// while the first forum's `check` recognises its own server.
#[tokio::test]
async fn a_port_held_by_another_forums_server_names_that_forum() {
    let (first, second) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let port = free_port();
    kyrne_forum(first.path(), "http://forum.example", port, &[]).await;
    let other = [
        ("kyrne-websocket.app_id", "82"),
        (
            "kyrne-websocket.app_key",
            "secondkey123456789abcdefghijklmn",
        ),
    ];
    kyrne_forum(second.path(), "http://forum.example", port, &other).await;
    let mut server = start(flarum_ws(first.path()).args(["serve"]));

    let (_, findings) = check_json(&mut flarum_ws(first.path()), &[]);
    assert_finding(
        finding(&findings, "port"),
        "pass",
        "serving this forum's app (id 77)",
        "",
    );
    let (code, findings) = check_json(&mut flarum_ws(second.path()), &[]);
    assert_eq!(code, 1, "{findings:#?}");
    let port_finding = finding(&findings, "port");
    assert_finding(
        port_finding,
        "fail",
        &format!(
            "held by another forum's flarum-ws (pid {}: app id 77, key forumkey0123456789abcdefghijklmn, forum root {})",
            server.child.id(),
            first.path().canonicalize().unwrap().display()
        ),
        "each forum needs a port of its own",
    );
    assert_in_troubleshooting(port_finding);

    // A copy of the first forum (a staging site: same credentials, another
    // root) on the same port is another forum too.
    let staging = tempfile::tempdir().unwrap();
    kyrne_forum(staging.path(), "http://forum.example", port, &[]).await;
    let (code, findings) = check_json(&mut flarum_ws(staging.path()), &[]);
    assert_eq!(code, 1, "{findings:#?}");
    assert_finding(
        finding(&findings, "port"),
        "fail",
        "held by another forum's flarum-ws",
        "each forum needs a port of its own",
    );
    server.stop_cleanly();
}

/// The websocket on a subdomain of the forum (`app_host` ws.forum.example):
/// browsers on the forum's pages send the forum's Origin, and so does the
/// live probe, which passes where it used to be refused (4009) and blame
/// the key.
#[tokio::test]
async fn live_sends_the_forums_origin_when_the_websocket_has_its_own_host() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let subdomain = [("kyrne-websocket.app_host", "ws.forum.example")];
    kyrne_forum(dir.path(), "http://forum.example", port, &subdomain).await;
    let mut server = start(flarum_ws(dir.path()).args(["serve"]));
    let via = format!("127.0.0.1:{port}");
    let (code, findings) = check_json(&mut flarum_ws(dir.path()), &["--live", "--via", &via]);
    let live = finding(&findings, "live");
    assert_eq!(live["status"], "pass", "{findings:#?}");
    assert!(
        live["message"]
            .as_str()
            .unwrap()
            .contains("ws://ws.forum.example:"),
        "{live}"
    );
    assert_eq!(code, 0, "{findings:#?}");
    server.stop_cleanly();

    // Allowed origins that leave out the forum: refused, and said so.
    let elsewhere = ("FLARUM_WS_ALLOWED_ORIGINS", "https://elsewhere.example");
    let mut server = start(
        flarum_ws(dir.path())
            .env(elsewhere.0, elsewhere.1)
            .args(["serve"]),
    );
    let (code, findings) = check_json(
        flarum_ws(dir.path()).env(elsewhere.0, elsewhere.1),
        &["--live", "--via", &via],
    );
    assert_eq!(code, 1, "{findings:#?}");
    let live = finding(&findings, "live");
    assert_finding(
        live,
        "fail",
        "got pusher:error 4009",
        "the server refuses the Origin the forum's pages send (http://forum.example)",
    );
    assert_in_troubleshooting(live);
    server.stop_cleanly();
}

/// The unit's sandbox, judged as the service meets it: a forum under /tmp
/// is hidden by `PrivateTmp=yes`, and a SQLite database outside
/// `ReadWritePaths=` cannot be written under `ProtectSystem=strict`; `check`
/// (run from a shell that sees both) fails each with the line to add.
#[tokio::test]
async fn what_the_units_sandbox_hides_from_the_service_fails() {
    let port = free_port();
    let etc = tempfile::tempdir().unwrap();
    let unit = etc.path().join("flarum-ws.service");
    let unit_arg = unit.to_str().unwrap().to_owned();
    let sandbox = |root: &Path, hides: &str| {
        format!(
            "[Service]\nEnvironment=FLARUM_WS_ROOT={}\nExecStart=/usr/bin/flarum-ws serve\n{hides}ProtectSystem=strict\n",
            root.display()
        )
    };

    let in_tmp = tempfile::tempdir().unwrap();
    kyrne_forum(in_tmp.path(), "http://forum.example", port, &[]).await;
    std::fs::write(&unit, sandbox(in_tmp.path(), "PrivateTmp=yes\n")).unwrap();
    let (code, findings) = check_json(&mut flarum_ws(in_tmp.path()), &["--unit", &unit_arg]);
    assert_eq!(code, 1, "{findings:#?}");
    let hidden = finding(&findings, "sandbox");
    assert_finding(
        hidden,
        "fail",
        &format!("is under /tmp, which the service does not see (PrivateTmp=yes in {unit_arg})"),
        "move the forum out of /tmp",
    );
    assert_in_troubleshooting(hidden);

    // Where the sandbox hides nothing (this checkout may itself be under
    // /tmp or /home): the SQLite folder must be writable.
    let served = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    kyrne_forum(served.path(), "http://forum.example", port, &[]).await;
    std::fs::write(&unit, sandbox(served.path(), "")).unwrap();
    let storage = served.path().join("storage");
    let (code, findings) = check_json(&mut flarum_ws(served.path()), &["--unit", &unit_arg]);
    assert_eq!(code, 1, "{findings:#?}");
    let read_only = finding(&findings, "sandbox");
    let fix = format!(
        "systemctl edit flarum-ws, then [Service] ReadWritePaths={}",
        storage.display()
    );
    assert_finding(
        read_only,
        "fail",
        "which the service may not write (ProtectSystem=strict",
        &fix,
    );
    assert_in_troubleshooting(read_only);
    assert_eq!(
        finding(&findings, "database")["status"],
        "pass",
        "{findings:#?}"
    );

    // The line added as the fix says: nothing left to say.
    std::fs::write(
        &unit,
        format!(
            "{}ReadWritePaths={}\n",
            sandbox(served.path(), ""),
            storage.display()
        ),
    )
    .unwrap();
    let (_, findings) = check_json(&mut flarum_ws(served.path()), &["--unit", &unit_arg]);
    assert!(
        findings.iter().all(|f| f["check"] != "sandbox"),
        "{findings:#?}"
    );
}

/// The port changed on the extension's page while the service still runs
/// on the old one (a restart pending): `check` says so, instead of a live
/// probe asking whether flarum-ws is running at all.
#[tokio::test]
async fn a_port_changed_with_a_restart_pending_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (free_port(), free_port());
    kyrne_forum(dir.path(), "http://forum.example", old, &[]).await;
    let mut server = start(flarum_ws(dir.path()).args(["serve"]));
    std::fs::remove_dir_all(dir.path().join("storage")).unwrap();
    kyrne_forum(dir.path(), "http://forum.example", new, &[]).await;
    let (code, findings) = check_json(&mut flarum_ws(dir.path()), &["--live"]);
    assert_eq!(code, 1, "{findings:#?}");
    let port = finding(&findings, "port");
    assert_finding(
        port,
        "fail",
        &format!(
            "is free, but this forum's flarum-ws (pid {}) still listens on port {old}",
            server.child.id()
        ),
        "restart flarum-ws to move it",
    );
    assert_in_troubleshooting(port);
    server.stop_cleanly();
}

/// Runs `check --json ARGS` in `dir` with the test credentials and `envs`.
fn check_with(dir: &Path, envs: &[(&str, String)], args: &[&str]) -> (i32, Vec<Value>) {
    check(dir, envs, args)
}

/// A copy of Let's Encrypt's layout under `base`: `live/forum/*.pem` are
/// links into `archive/forum/`, the archive directory is 0700 and the key
/// 0600, all owned by whoever runs the test.
fn letsencrypt_layout(base: &Path, pki: &Pki) -> (std::path::PathBuf, std::path::PathBuf) {
    use std::os::unix::fs::{PermissionsExt, symlink};
    let leaf = pki.leaf("forum", false);
    let archive = base.join("archive/forum");
    let live = base.join("live/forum");
    std::fs::create_dir_all(&archive).unwrap();
    std::fs::create_dir_all(&live).unwrap();
    std::fs::copy(&leaf.full_chain, archive.join("fullchain1.pem")).unwrap();
    std::fs::copy(&leaf.key, archive.join("privkey1.pem")).unwrap();
    symlink(
        "../../archive/forum/fullchain1.pem",
        live.join("fullchain.pem"),
    )
    .unwrap();
    symlink("../../archive/forum/privkey1.pem", live.join("privkey.pem")).unwrap();
    let mode = |path: &Path, mode| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap()
    };
    mode(base, 0o755);
    mode(&base.join("live"), 0o700);
    mode(&base.join("archive"), 0o700);
    mode(&archive.join("privkey1.pem"), 0o600);
    (live.join("fullchain.pem"), live.join("privkey.pem"))
}

/// Item 2: Let's Encrypt's permissions let root read the key but not the
/// service's account. `check --user` judges for that account, names the
/// directory that blocks and how to open it in a way certbot's renewals
/// keep; once granted it passes, and still passes after a renewal done as
/// certbot does it (a new key with the old one's group and mode). `serve`
/// run as that account says the same.
#[test]
#[ignore = "needs root (chgrp to the service account's group)"]
fn a_certificate_the_service_user_cannot_read_fails_and_serve_says_why() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let pki = Pki::new();
    let base = tempfile::tempdir().unwrap();
    let (cert, key) = letsencrypt_layout(base.path(), &pki);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let envs = tls_env(&cert, &key, port);
    let (code, findings) = check_with(dir.path(), &envs, &["--user", "nobody"]);
    assert_eq!(code, 1, "{findings:#?}");
    let access = finding(&findings, "access");
    assert_finding(
        access,
        "fail",
        &format!(
            "nobody cannot enter {} (0700 ",
            base.path().join("live").display()
        ),
        "in a way certbot's renewals keep",
    );
    assert!(
        access["message"]
            .as_str()
            .unwrap()
            .contains("named by --user")
    );
    assert_in_troubleshooting(access);

    // Granted as the fix says: the key's group, and the folders opened.
    let grant = format!(
        "chmod 0755 {base}/live {base}/archive && chgrp nogroup {base}/archive/*/privkey*.pem && chmod 0640 {base}/archive/*/privkey*.pem",
        base = base.path().display()
    );
    assert!(access["fix"].as_str().unwrap().contains(&grant), "{access}");
    let status = Command::new("sh").args(["-c", &grant]).status().unwrap();
    assert!(status.success(), "{grant}");
    let (_, findings) = check_with(dir.path(), &envs, &["--user", "nobody"]);
    assert_finding(finding(&findings, "access"), "pass", "nobody can read", "");

    // A renewal as certbot does it: privkey2.pem takes privkey1's group
    // and mode, and live/ points at it.
    let archive = base.path().join("archive/forum");
    let old = std::fs::metadata(archive.join("privkey1.pem")).unwrap();
    std::fs::copy(archive.join("privkey1.pem"), archive.join("privkey2.pem")).unwrap();
    std::os::unix::fs::chown(archive.join("privkey2.pem"), None, Some(old.gid())).unwrap();
    std::fs::set_permissions(
        archive.join("privkey2.pem"),
        std::fs::Permissions::from_mode(old.mode() & 0o777),
    )
    .unwrap();
    let live_key = base.path().join("live/forum/privkey.pem");
    std::fs::remove_file(&live_key).unwrap();
    std::os::unix::fs::symlink("../../archive/forum/privkey2.pem", &live_key).unwrap();
    let (_, findings) = check_with(dir.path(), &envs, &["--user", "nobody"]);
    assert_finding(finding(&findings, "access"), "pass", "nobody can read", "");
    for folder in ["live", "archive"] {
        std::fs::set_permissions(
            base.path().join(folder),
            std::fs::Permissions::from_mode(0o700),
        )
        .unwrap();
    }

    // serve, as the account that cannot read: the same cause and fix.
    let mut serve = flarum_ws(dir.path());
    serve.envs(CREDENTIALS);
    serve.envs(envs.iter().map(|(k, v)| (*k, v.as_str())));
    let blocked = if running_as_root() {
        use std::os::unix::process::CommandExt;
        serve.uid(65534).gid(65534);
        "nobody cannot enter"
    } else {
        // Not root: the owner locks themself out of the archive instead.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            base.path().join("archive"),
            std::fs::Permissions::from_mode(0o000),
        )
        .unwrap();
        "cannot enter"
    };
    let output = serve.arg("serve").output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot be read by flarum-ws, running as")
            && stderr.contains(blocked)
            && stderr.contains(&format!("{}", base.path().join("archive").display()))
            && stderr.contains("fix: "),
        "{stderr}"
    );
}

/// A config.php the service's account cannot read: root reads it, so
/// `check` judges for the unit's `User=` (here `--user nobody`) and fails
/// with a fix for that account; `serve` run as that account names the same
/// account instead of telling it to run as itself.
#[tokio::test]
#[ignore = "needs root (files of another account, chgrp to its group)"]
async fn a_config_php_the_service_user_cannot_read_fails() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    kyrne_forum(dir.path(), "http://forum.example", free_port(), &[]).await;
    let mode = |path: &Path, mode| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap()
    };
    mode(dir.path(), 0o755);
    let config = dir.path().join("config.php");
    mode(&config, 0o600);
    let (code, findings) = check_json(&mut flarum_ws(dir.path()), &["--user", "nobody"]);
    assert_eq!(code, 1, "{findings:#?}");
    let access = finding(&findings, "access");
    let grant = format!(
        "chgrp nogroup {} && chmod 0640 {}",
        config.display(),
        config.display()
    );
    assert_finding(
        access,
        "fail",
        &format!("nobody cannot read {} (0600", config.display()),
        &grant,
    );
    assert_in_troubleshooting(access);

    // serve as that account: the same account and fix, not "run as www-data".
    let mut serve = flarum_ws(dir.path());
    {
        use std::os::unix::process::CommandExt;
        serve.uid(65534).gid(65534);
    }
    let output = serve.arg("serve").output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("flarum-ws runs as nobody") && stderr.contains(&grant),
        "{stderr}"
    );
    assert!(!stderr.contains("www-data"), "{stderr}");

    // Granted as the fix says, check passes it.
    let status = Command::new("sh").args(["-c", &grant]).status().unwrap();
    assert!(status.success(), "{grant}");
    let (_, findings) = check_json(&mut flarum_ws(dir.path()), &["--user", "nobody"]);
    assert!(
        !findings.iter().any(|f| f["check"] == "access"),
        "{findings:#?}"
    );
    assert_eq!(
        finding(&findings, "database")["status"],
        "pass",
        "{findings:#?}"
    );
}

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .any(|line| line.starts_with("Uid:") && line.split_whitespace().nth(2) == Some("0"))
}

/// Item 3: the example YAML, used as it is in a forum root, changes
/// nothing; a YAML key that replaces a forum setting is pointed out by
/// `check` and `config`.
#[tokio::test]
async fn a_yaml_or_variable_overriding_the_forum_is_pointed_out() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port().to_string();
    let rows = forum_rows(&port);
    let rows: Vec<(&str, &str)> = rows.iter().map(|(k, v)| (*k, v.as_str())).collect();
    sqlite_forum(dir.path(), "http://forum.example", &rows).await;
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/contrib/flarum-ws.example.yaml"
    );
    let (_, findings) = check_json(&mut flarum_ws(dir.path()), &["--config", example]);
    assert!(
        findings.iter().all(|f| f["check"] != "overrides"),
        "{findings:#?}"
    );
    assert_finding(
        finding(&findings, "credentials"),
        "pass",
        "key forumkey0123456789abcdefghijklmn",
        "",
    );

    std::fs::write(dir.path().join("ws.yaml"), "app_key: yamlkey\n").unwrap();
    let (code, findings) = check_json(&mut flarum_ws(dir.path()), &["--config", "ws.yaml"]);
    let overrides = finding(&findings, "overrides");
    assert_finding(
        overrides,
        "warn",
        "app_key comes from `app_key:` in ",
        "remove `app_key:` in ",
    );
    assert!(
        overrides["message"]
            .as_str()
            .unwrap()
            .contains("settings table settings (key kyrne-websocket.app_key)"),
        "{overrides}"
    );
    assert_eq!(code, 0, "a warning, not a failure: {findings:#?}");
    assert_in_troubleshooting(overrides);

    let output = flarum_ws(dir.path())
        .env("FLARUM_WS_PORT", &port)
        .args(["config", "--config", "ws.yaml"])
        .output()
        .unwrap();
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(
        text.contains("# note: app_key from `app_key:` in ")
            && text.contains("# note: port from FLARUM_WS_PORT in the environment overrides the forum's settings table settings (key kyrne-websocket.app_port)"),
        "{text}"
    );
    // Item 15: where each forum value is kept, and the trusted proxies.
    assert!(
        text.contains("settings table settings (key kyrne-websocket.app_id)"),
        "{text}"
    );
}

/// Item 4: `serve` says an expired certificate is expired, at start and at
/// each reload, and warns in its last two weeks.
#[test]
fn serve_logs_an_expired_or_expiring_certificate_at_start_and_reload() {
    let pki = Pki::new();
    let expired = pki.leaf("expired", true);
    let dir = tempfile::tempdir().unwrap();
    let mut command = flarum_ws(dir.path());
    command.envs(CREDENTIALS);
    for (name, value) in tls_env(&expired.full_chain, &expired.key, free_port()) {
        command.env(name, value);
    }
    let mut server = start(command.arg("serve"));
    server.signal("HUP");
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let log = server.stop_cleanly();
    let errors: Vec<&String> = log
        .iter()
        .filter(|l| l.contains("ERROR") && l.contains("expired on") && l.contains("certbot renew"))
        .collect();
    assert_eq!(
        errors.len(),
        2,
        "once at start, once at the reload: {log:#?}"
    );

    let (soon, soon_key) = expiring_in_days(&pki, 5);
    let mut command = flarum_ws(dir.path());
    command
        .envs(CREDENTIALS)
        .envs([("FLARUM_WS_SELF_SIGNED", "true")]);
    for (name, value) in tls_env(&soon, &soon_key, free_port()) {
        command.env(name, value);
    }
    let mut server = start(command.arg("serve"));
    let log = server.stop_cleanly();
    assert!(
        log.iter()
            .any(|l| l.contains("WARN") && l.contains("expires in 4 day(s)")
                || l.contains("WARN") && l.contains("expires in 5 day(s)")),
        "{log:#?}"
    );
}

/// Issue 34, setup 8: a valid server certificate with an expired
/// intermediate in its chain file. `check` named the leaf valid and the
/// chain complete, `serve` logged nothing; now both name the intermediate
/// and the stale chain file.
#[test]
fn an_expired_intermediate_is_named_by_check_and_serve() {
    let pki = Pki::with_expired_intermediate();
    let leaf = pki.leaf("forum", false);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let (code, findings) = check(dir.path(), &tls_env(&leaf.full_chain, &leaf.key, port), &[]);
    assert_eq!(code, 1, "{findings:#?}");
    let stale = finding_with(&findings, "expiry", "fail");
    assert_finding(
        stale,
        "fail",
        "the intermediate certificate CN=flarum-ws test intermediate in",
        "the chain file is stale: use the full chain your certificate authority issues now",
    );
    assert_in_troubleshooting(stale);
    let mut command = credentialed(dir.path(), &tls_env(&leaf.full_chain, &leaf.key, port));
    let mut server = start(command.arg("serve"));
    let log = server.stop_cleanly();
    assert!(
        log.iter().any(|l| l.contains("ERROR")
            && l.contains("intermediate certificate CN=flarum-ws test intermediate")
            && l.contains("expired on")),
        "{log:#?}"
    );
}

/// Issue 34: the running server is asked what it loaded (`/about`), and a
/// setting it runs with that differs from the one judged is named, with
/// both sources: the edit is not in force until a reload.
#[test]
fn check_compares_the_running_server_with_what_it_judged() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port().to_string();
    let server = start(credentialed(dir.path(), &[("FLARUM_WS_PORT", port.clone())]).arg("serve"));
    let (_, findings) = check(dir.path(), &[("FLARUM_WS_PORT", port.clone())], &[]);
    assert_finding(
        finding(&findings, "running"),
        "pass",
        "serves with the settings judged here",
        "",
    );
    let (_, findings) = check(
        dir.path(),
        &[
            ("FLARUM_WS_PORT", port.clone()),
            ("FLARUM_WS_ACTIVITY_TIMEOUT", "45".into()),
        ],
        &[],
    );
    assert_finding(
        finding(&findings, "running"),
        "warn",
        "activity_timeout: running 30",
        "systemctl reload flarum-ws",
    );
    drop(server);
}

/// A self-signed certificate for localhost that expires in `days` days.
fn expiring_in_days(pki: &Pki, days_left: i64) -> (std::path::PathBuf, std::path::PathBuf) {
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    let days = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        / 86_400;
    let (y, m, d) = civil_from_days(days + days_left);
    params.not_after = rcgen::date_time_ymd(y, m, d);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let (cert_path, key_path) = (pki.path("soon.pem"), pki.path("soon.key"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    (cert_path, key_path)
}

/// Item 5: a chain pasted intermediate first is served in order; `check`
/// says only that the order is wrong (no false key mismatch, no empty
/// name) and a browser-like client verifies it.
#[tokio::test]
async fn a_chain_out_of_order_is_reported_as_such_and_served_in_order() {
    let pki = Pki::new();
    let leaf = pki.leaf("forum", false);
    let reversed = pki.path("reversed.pem");
    std::fs::write(
        &reversed,
        format!(
            "{}{}",
            pki.intermediate_pem,
            std::fs::read_to_string(&leaf.cert_only).unwrap()
        ),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut envs = tls_env(&reversed, &leaf.key, port);
    let mut command = credentialed(dir.path(), &envs);
    let mut server = start(command.arg("serve"));
    envs.push(("SSL_CERT_FILE", pki.root_pem.display().to_string()));
    let via = format!("127.0.0.1:{port}");
    let (code, findings) = check(dir.path(), &envs, &["--live", "--via", &via]);
    assert_eq!(code, 0, "{findings:#?}");
    let chain = finding(&findings, "chain");
    assert_finding(
        chain,
        "warn",
        "lists the chain out of order (CN=flarum-ws test intermediate | CN=forum)",
        "list the server certificate first",
    );
    assert_in_troubleshooting(chain);
    for name in ["key matches", "names", "live"] {
        assert_eq!(
            finding(&findings, name)["status"],
            "pass",
            "{name}: {findings:#?}"
        );
    }
    let log = server.stop_cleanly();
    assert!(
        log.iter()
            .any(|l| l.contains("WARN") && l.contains("out of order")),
        "{log:#?}"
    );
}

/// Item 7: each way a key cannot be used has its own fix.
#[test]
fn each_key_problem_has_its_own_fix() {
    let pki = Pki::new();
    let leaf = pki.leaf("forum", false);
    let key = leaf.key.display().to_string();
    let encrypted = pki.path("encrypted.key");
    common::pki::openssl(
        &[
            "pkcs8",
            "-topk8",
            "-v2",
            "aes-256-cbc",
            "-in",
            &key,
            "-passout",
            "pass:right",
            "-out",
            encrypted.to_str().unwrap(),
        ],
        &encrypted,
    );
    let legacy = pki.path("legacy.key");
    common::pki::openssl(
        &[
            "pkey",
            "-in",
            &key,
            "-traditional",
            "-aes256",
            "-passout",
            "pass:right",
            "-out",
            legacy.to_str().unwrap(),
        ],
        &legacy,
    );
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cases: [(&Path, Option<&str>, &str, &str); 4] = [
        (
            &encrypted,
            None,
            "is encrypted but no passphrase is set",
            "set the key's passphrase on the extension's page",
        ),
        (
            &encrypted,
            Some("wrong"),
            "could not be decrypted",
            "check the passphrase: `openssl pkey -in",
        ),
        (
            &legacy,
            Some("right"),
            "legacy OpenSSL PEM encryption",
            "convert it to encrypted PKCS#8: openssl pkcs8 -topk8",
        ),
        (
            Path::new("/etc/ssl/private/missing.key"),
            None,
            "does not exist",
            "check the path /etc/ssl/private/missing.key",
        ),
    ];
    for (key_path, passphrase, message, fix) in cases {
        let mut envs = tls_env(&leaf.full_chain, key_path, port);
        if let Some(passphrase) = passphrase {
            envs.push(("FLARUM_WS_TLS_PASSPHRASE", passphrase.into()));
        }
        let (code, findings) = check(dir.path(), &envs, &[]);
        assert_eq!(code, 1);
        let private_key = finding(&findings, "private key");
        assert_finding(private_key, "fail", message, fix);
        assert!(
            !private_key["fix"]
                .as_str()
                .unwrap()
                .contains("issued with this certificate"),
            "{private_key}"
        );
        assert_in_troubleshooting(private_key);
        assert!(
            findings.iter().all(|f| f["check"] != "key matches"),
            "{findings:#?}"
        );
    }
    // The right passphrase: all good.
    let mut envs = tls_env(&leaf.full_chain, &encrypted, port);
    envs.push(("FLARUM_WS_TLS_PASSPHRASE", "right".into()));
    let (_, findings) = check(dir.path(), &envs, &[]);
    assert_eq!(finding(&findings, "key matches")["status"], "pass");
}

/// Items 8, 9 and 10: what a browser's connection meets on the way, named:
/// an issuer this machine does not trust (`check` and `trigger`), a
/// `--via` that names flarum-ws's plain port behind a proxy, a host name
/// with no DNS record.
#[test]
fn live_failures_name_their_cause() {
    let pki = Pki::new();
    let leaf = pki.leaf("forum", false);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let envs = tls_env(&leaf.full_chain, &leaf.key, port);
    let mut command = credentialed(dir.path(), &envs);
    let server = start(command.arg("serve"));
    let via = format!("127.0.0.1:{port}");
    let (code, findings) = check(dir.path(), &envs, &["--live", "--via", &via]);
    assert_eq!(code, 1);
    let live = finding(&findings, "live");
    assert_finding(
        live,
        "fail",
        "is not trusted on this machine",
        "SSL_CERT_FILE=/path/to/ca.pem",
    );
    assert_in_troubleshooting(live);
    let output = flarum_ws(dir.path())
        .envs(CREDENTIALS)
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .args(["trigger", "public", "hello"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr.contains("is not trusted on this machine")
            && stderr.contains("fix: ")
            && stderr.contains("SSL_CERT_FILE"),
        "{stderr}"
    );
    drop(server);

    // Reverse-proxy mode, --via at flarum-ws's own (plain) port.
    let plain_port = free_port();
    let proxied = [
        ("FLARUM_WS_REVERSE_PROXY", "true".to_owned()),
        ("FLARUM_WS_PORT", plain_port.to_string()),
        ("FLARUM_WS_APP_HOST", "localhost".to_owned()),
    ];
    let mut command = credentialed(dir.path(), &proxied);
    let server = start(command.arg("serve"));
    let via = format!("127.0.0.1:{plain_port}");
    let (_, findings) = check(dir.path(), &proxied, &["--live", "--via", &via]);
    let live = finding(&findings, "live");
    assert_finding(
        live,
        "fail",
        "answered in plain HTTP, not TLS",
        "point --via at the proxy",
    );
    assert!(
        !live["fix"].as_str().unwrap().contains("certificate"),
        "{live}"
    );
    assert_in_troubleshooting(live);
    drop(server);

    // A host name without DNS records.
    let nowhere = [
        ("FLARUM_WS_REVERSE_PROXY", "true".to_owned()),
        ("FLARUM_WS_PORT", free_port().to_string()),
        ("FLARUM_WS_APP_HOST", "no-such-forum.invalid".to_owned()),
    ];
    let (_, findings) = check(dir.path(), &nowhere, &["--live"]);
    let live = finding(&findings, "live");
    assert_finding(
        live,
        "fail",
        "DNS has no address for no-such-forum.invalid",
        "add an A (or AAAA) record for no-such-forum.invalid",
    );
    assert!(
        !live["fix"]
            .as_str()
            .unwrap()
            .contains("is flarum-ws running"),
        "{live}"
    );
    assert_in_troubleshooting(live);
}

/// Item 11: run from the forum's `public/` folder, `check` says the forum
/// root is one level up instead of running standalone.
#[tokio::test]
async fn run_from_public_names_the_forum_root() {
    let dir = tempfile::tempdir().unwrap();
    let rows = forum_rows(&free_port().to_string());
    let rows: Vec<(&str, &str)> = rows.iter().map(|(k, v)| (*k, v.as_str())).collect();
    sqlite_forum(dir.path(), "https://forum.example", &rows).await;
    std::fs::create_dir(dir.path().join("public")).unwrap();
    let (code, findings) = check_json(&mut flarum_ws(&dir.path().join("public")), &[]);
    assert_eq!(code, 1);
    let config_php = finding(&findings, "config.php");
    assert_finding(
        config_php,
        "fail",
        "no config.php in",
        &format!(
            "{} is the forum's root (it holds config.php): run flarum-ws there, or pass --root",
            dir.path().display()
        ),
    );
    assert_in_troubleshooting(config_php);
    assert!(
        findings.iter().all(|f| f["check"] != "credentials"),
        "{findings:#?}"
    );

    // The same folder named by FLARUM_WS_ROOT (as in /etc/default/flarum-ws):
    // the variable is blamed and named in the fix, by check and by serve.
    let public = dir.path().join("public");
    let elsewhere = tempfile::tempdir().unwrap();
    let named = || {
        let mut command = flarum_ws(elsewhere.path());
        command.env("FLARUM_WS_ROOT", &public);
        command
    };
    let (code, findings) = check_json(&mut named(), &[]);
    assert_eq!(code, 1);
    let config_php = finding(&findings, "config.php");
    let fix = format!(
        "{} is the forum's root (it holds config.php): set FLARUM_WS_ROOT={} where FLARUM_WS_ROOT is set (under systemd, /etc/default/flarum-ws)",
        dir.path().display(),
        dir.path().display()
    );
    assert_finding(
        config_php,
        "fail",
        &format!(
            "no config.php in {} (named by FLARUM_WS_ROOT)",
            public.display()
        ),
        &fix,
    );
    assert_in_troubleshooting(config_php);
    let output = named().arg("serve").output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&fix) && !stderr.contains("--root"),
        "{stderr}"
    );
}

/// Item 18: a forum's own origin is the default `allowed_origins`, so a
/// correct forum setup gets no origins warning, pages of other sites are
/// refused (and the refusal logged with the variable to add a name), and
/// the forum's pages connect.
#[tokio::test]
async fn the_forum_url_is_the_default_allowed_origin() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port().to_string();
    let mut rows = forum_rows(&port);
    rows.push(("kyrne-websocket.reverse_proxy", "1".into()));
    let rows: Vec<(&str, &str)> = rows.iter().map(|(k, v)| (*k, v.as_str())).collect();
    sqlite_forum(dir.path(), "https://forum.example/", &rows).await;
    let (code, findings) = check_json(&mut flarum_ws(dir.path()), &[]);
    assert_eq!(code, 0, "{findings:#?}");
    assert_finding(
        finding(&findings, "origins"),
        "pass",
        "browsers on https://forum.example only (from the forum's url in",
        "",
    );

    let mut server = start(flarum_ws(dir.path()).arg("serve"));
    let connect = |origin: &'static str| {
        let url = format!(
            "ws://127.0.0.1:{port}/app/forumkey0123456789abcdefghijklmn?protocol=7&client=js&version=8.4.0"
        );
        async move {
            let mut request = url.into_client_request().unwrap();
            request
                .headers_mut()
                .insert("Origin", origin.parse().unwrap());
            let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
            use futures_util::StreamExt;
            let first = ws.next().await.unwrap().unwrap();
            first.into_text().unwrap().to_string()
        }
    };
    let welcomed = connect("https://forum.example").await;
    assert!(
        welcomed.contains("pusher:connection_established"),
        "{welcomed}"
    );
    let refused = connect("https://elsewhere.example").await;
    assert!(
        refused.contains("4009") && refused.contains("not allowed"),
        "{refused}"
    );
    let log = server.stop_cleanly();
    assert!(
        log.iter().any(|l| l.contains("WARN")
            && l.contains("Refused a websocket from a page on https://elsewhere.example")
            && l.contains(
                "FLARUM_WS_ALLOWED_ORIGINS=https://forum.example,https://elsewhere.example"
            )),
        "{log:#?}"
    );
}

/// A one-request HTTP receiver on loopback: answers 200 when the webhook
/// signature is this app's, `refusal` otherwise. Returns its URL.
fn webhook_receiver(refusal: u16, secret: &'static str) -> String {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let (mut length, mut signature, mut key) = (0, String::new(), String::new());
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(": ").unwrap_or((line, ""));
            match name.to_ascii_lowercase().as_str() {
                "content-length" => length = value.parse().unwrap(),
                "x-pusher-signature" => signature = value.to_owned(),
                "x-pusher-key" => key = value.to_owned(),
                _ => {}
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        let body = String::from_utf8(body).unwrap();
        let valid = key == KEY
            && signature == flarum_ws::protocol::signature::hmac_hex(secret, &body)
            && body.contains(r#""events":[]"#);
        let status = if valid { 200 } else { refusal };
        write!(
            &stream,
            "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        )
        .unwrap();
    });
    url
}

#[test]
fn webhook_receivers_get_a_signed_test_request() {
    let dir = tempfile::tempdir().unwrap();
    let good = webhook_receiver(401, SECRET);
    let (code, findings) = check(dir.path(), &[("FLARUM_WS_WEBHOOK_URL", good.clone())], &[]);
    let hook = finding(&findings, "webhooks");
    assert_eq!(hook["status"], "pass", "{hook}");
    assert_eq!(
        hook["message"],
        format!("{good} answered a signed test request")
    );
    assert_eq!(code, 0);

    // A receiver checking with another secret refuses: the fix names the key.
    let other = webhook_receiver(401, "another-secret");
    let (code, findings) = check(dir.path(), &[("FLARUM_WS_WEBHOOK_URL", other.clone())], &[]);
    let hook = finding(&findings, "webhooks");
    assert_eq!(code, 1);
    assert_eq!(
        hook["message"],
        format!("{other} refused a signed test request (401)")
    );
    assert!(hook["fix"].as_str().unwrap().contains(KEY), "{hook}");

    let closed = format!("http://127.0.0.1:{}/hook", free_port());
    let (code, findings) = check(dir.path(), &[("FLARUM_WS_WEBHOOK_URL", closed)], &[]);
    let hook = finding(&findings, "webhooks");
    assert_eq!(code, 1);
    assert_eq!(
        hook["fix"],
        "start the receiver, or fix the host and port in the webhook URL"
    );
}

/// M7 of the second attack pass, under issue 35's admission rule: a
/// per-address limit larger than the places past the high-water mark lets
/// one address take every place left; `check` says so, with the fix, and
/// shows the rule in force otherwise.
#[test]
fn a_per_address_limit_as_large_as_the_total_is_pointed_out() {
    let dir = tempfile::tempdir().unwrap();
    let (_, findings) = check(
        dir.path(),
        &[
            ("FLARUM_WS_MAX_CONNECTIONS", "1000".to_owned()),
            ("FLARUM_WS_MAX_CONNECTIONS_PER_IP", "1000".to_owned()),
        ],
        &[],
    );
    assert_finding(
        finding(&findings, "connections"),
        "warn",
        "one address can take every place left",
        "FLARUM_WS_MAX_CONNECTIONS_PER_IP=50",
    );
    let (_, findings) = check(dir.path(), &[], &[]);
    assert_finding(
        finding(&findings, "connections"),
        "pass",
        "up to 50000 websockets in all; below 45000 open (90 %) every address is admitted, however many tabs share it",
        "",
    );
}

/// Issue 25, false pass 1: `check` judges with what the service will run:
/// the unit's `EnvironmentFile` (where the README, the default file and
/// `check`'s own fixes send admins) and its working directory, not the
/// admin's shell. Run from elsewhere, the forum named there is found; a
/// typo there fails with the nearest known name; a variable set only in the
/// shell is pointed out; and a unit that would not find the forum fails.
#[tokio::test]
async fn check_judges_with_the_units_environment_file() {
    let forum = tempfile::tempdir().unwrap();
    let port = free_port().to_string();
    let rows = forum_rows(&port);
    let rows: Vec<(&str, &str)> = rows.iter().map(|(k, v)| (*k, v.as_str())).collect();
    sqlite_forum(forum.path(), "http://forum.example", &rows).await;
    let etc = tempfile::tempdir().unwrap();
    let defaults = etc.path().join("flarum-ws");
    let unit = etc.path().join("flarum-ws.service");
    std::fs::write(
        &unit,
        format!(
            "[Service]\nEnvironmentFile=-{}\nExecStart=/usr/bin/flarum-ws serve\n",
            defaults.display()
        ),
    )
    .unwrap();
    let unit_arg = unit.to_str().unwrap().to_owned();
    let elsewhere = tempfile::tempdir().unwrap();
    let run = |dir: &Path, shell: &[(&str, &str)]| {
        let mut command = flarum_ws(dir);
        command.envs(shell.iter().copied());
        check_json(&mut command, &["--unit", &unit_arg])
    };

    // The forum root is in the environment file: found from anywhere.
    std::fs::write(
        &defaults,
        format!("FLARUM_WS_ROOT={}\n", forum.path().display()),
    )
    .unwrap();
    let (_, findings) = run(elsewhere.path(), &[]);
    assert_finding(
        finding(&findings, "service environment"),
        "pass",
        &format!("with the environment of {}", defaults.display()),
        "",
    );
    assert!(
        finding(&findings, "config.php")["message"]
            .as_str()
            .unwrap()
            .contains(&forum.path().display().to_string()),
        "{findings:#?}"
    );

    // A typo in the file: the service would refuse to start.
    std::fs::write(
        &defaults,
        format!(
            "FLARUM_WS_ROOT={}\nFLARUM_WS_PROT=2083\n",
            forum.path().display()
        ),
    )
    .unwrap();
    let (code, findings) = run(elsewhere.path(), &[]);
    assert_eq!(code, 1, "{findings:#?}");
    let typo = finding_with(&findings, "service environment", "fail");
    assert_finding(
        typo,
        "fail",
        "unknown variable FLARUM_WS_PROT",
        "did you mean FLARUM_WS_PORT?",
    );
    assert_in_troubleshooting(typo);

    // A setting in the shell only: the service does not get it.
    std::fs::write(
        &defaults,
        format!("FLARUM_WS_ROOT={}\n", forum.path().display()),
    )
    .unwrap();
    let (_, findings) = run(elsewhere.path(), &[("FLARUM_WS_VERBOSE", "true")]);
    let shell = finding_with(&findings, "service environment", "warn");
    assert_finding(
        shell,
        "warn",
        "FLARUM_WS_VERBOSE set in this shell only",
        "put them in /etc/default/flarum-ws",
    );

    // No root in the file, check run from the forum: the service starts in
    // / and would not find it.
    std::fs::write(&defaults, "").unwrap();
    let (code, findings) = run(forum.path(), &[]);
    assert_eq!(code, 1, "{findings:#?}");
    let lost = finding_with(&findings, "service environment", "fail");
    assert_finding(
        lost,
        "fail",
        "with no FLARUM_WS_ROOT: it will not find the forum",
        &format!("add FLARUM_WS_ROOT={}", forum.path().display()),
    );

    // Read by systemd's rules, not a shell's: an `export` line is skipped
    // (and named), a comment after a value is part of it.
    std::fs::write(
        &defaults,
        format!("export FLARUM_WS_ROOT={}\n", forum.path().display()),
    )
    .unwrap();
    let (code, findings) = run(elsewhere.path(), &[]);
    assert_eq!(code, 1, "{findings:#?}");
    let skipped = finding_with(&findings, "service environment", "fail");
    assert_finding(
        skipped,
        "fail",
        "`export FLARUM_WS_ROOT=`: systemd does not read `export` and ignores the line",
        "write the line as NAME=value in",
    );
    assert_in_troubleshooting(skipped);
    std::fs::write(
        &defaults,
        format!("FLARUM_WS_ROOT={} # the forum\n", forum.path().display()),
    )
    .unwrap();
    let (code, findings) = run(elsewhere.path(), &[]);
    assert_eq!(code, 1, "{findings:#?}");
    assert_finding(finding(&findings, "config.php"), "fail", "# the forum", "");

    // Run from a second forum's folder: what is said is about the unit's.
    let second = tempfile::tempdir().unwrap();
    sqlite_forum(second.path(), "http://second.example", &rows).await;
    std::fs::write(
        &defaults,
        format!("FLARUM_WS_ROOT={}\n", forum.path().display()),
    )
    .unwrap();
    let (code, findings) = run(second.path(), &[]);
    assert_eq!(code, 1, "{findings:#?}");
    let other = finding(&findings, "forum");
    assert_finding(
        other,
        "fail",
        "nothing above is about this forum",
        &format!(
            "to judge this forum: flarum-ws check --root {}",
            second.path().display()
        ),
    );
    assert_in_troubleshooting(other);
}

/// Issue 25, false pass 2: a port below 1024 passed as root and with
/// `--user`; the service's account cannot bind it.
#[test]
fn a_privileged_port_fails_for_an_account_that_cannot_bind_it() {
    let dir = tempfile::tempdir().unwrap();
    let (code, findings) = check(
        dir.path(),
        &[("FLARUM_WS_PORT", "443".to_owned())],
        &["--user", "nobody"],
    );
    assert_eq!(code, 1, "{findings:#?}");
    let refused = finding_with(&findings, "port", "fail");
    assert_finding(
        refused,
        "fail",
        "port 443 is below 1024: nobody (named by --user) cannot bind it",
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE and AmbientCapabilities=CAP_NET_BIND_SERVICE",
    );
    assert_in_troubleshooting(refused);
    let (_, findings) = check(
        dir.path(),
        &[("FLARUM_WS_PORT", "4443".to_owned())],
        &["--user", "nobody"],
    );
    assert!(
        findings
            .iter()
            .all(|f| f["check"] != "port" || f["status"] != "fail"),
        "{findings:#?}"
    );
}
