//! The `flarum-ws` binary as an admin runs it: configuration errors, the
//! startup log, verbose logging without secrets, and SIGTERM.

use crate::common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::common::process::{flarum_ws, free_port, http_get, run, start};

use crate::common::*;

#[test]
fn without_credentials_it_says_where_they_come_from() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, stderr) = run(flarum_ws(dir.path()).arg("serve"));
    assert_eq!(code, 1);
    assert!(stderr.contains("no app credentials"), "{stderr}");
    assert!(
        stderr.contains("FLARUM_WS_APP_KEY") && stderr.contains("--config"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "one clear message: {stderr}");
}

/// Exit codes mean the same from every command: a setup the admin has to
/// fix is 1 (serve cannot start; check finds it and prints a ✗), a command
/// line that cannot be parsed is 2.
#[test]
fn the_same_mistake_exits_the_same_from_every_command() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("broken.yaml"), "app_id: [unclosed\n").unwrap();
    type Mistake<'a> = (&'a str, &'a [&'a str], &'a [(&'a str, &'a str)]);
    let mistakes: [Mistake; 4] = [
        ("no credentials", &[], &[]),
        ("a broken YAML file", &["--config", "broken.yaml"], &[]),
        (
            "a bad variable",
            &[],
            &[("FLARUM_WS_APP_ID", "1"), ("FLARUM_WS_PORT", "many")],
        ),
        (
            "a forum root without config.php",
            &["--root", "nowhere"],
            &[],
        ),
    ];
    for (mistake, args, env) in mistakes {
        for command in ["serve", "check", "config", "nginx-snippet"] {
            let mut run_it = flarum_ws(dir.path());
            run_it.arg(command).args(args).envs(env.iter().copied());
            let (code, _, _) = run(&mut run_it);
            assert_eq!(code, 1, "{command} with {mistake}");
        }
    }
    for command in ["serve", "check", "config", "nginx-snippet", "trigger"] {
        let (code, _, stderr) = run(flarum_ws(dir.path()).args([command, "--no-such-flag"]));
        assert_eq!(code, 2, "{command} with an unknown flag: {stderr}");
        assert!(stderr.contains("--no-such-flag"), "{stderr}");
    }
}

#[test]
fn yaml_errors_name_the_file_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, stderr) = run(flarum_ws(dir.path()).args(["serve", "--config", "absent.yaml"]));
    assert_eq!(code, 1);
    assert!(stderr.contains("absent.yaml"), "{stderr}");

    std::fs::write(
        dir.path().join("typo.yaml"),
        "app_id: '1'\napp_key: k\napp_secret: s\nprot: 1\n",
    )
    .unwrap();
    let (code, _, stderr) = run(flarum_ws(dir.path()).args(["serve", "--config", "typo.yaml"]));
    assert_eq!(code, 1);
    assert!(
        stderr.contains("typo.yaml") && stderr.contains("prot") && stderr.contains("line 4"),
        "{stderr}"
    );

    std::fs::write(dir.path().join("value.yaml"), "app_id: '1'\nport: many\n").unwrap();
    let (code, _, stderr) = run(flarum_ws(dir.path())
        .env("FLARUM_WS_CONFIG", "value.yaml")
        .arg("serve"));
    assert_eq!(code, 1);
    assert!(
        stderr.contains("value.yaml") && stderr.contains("port") && stderr.contains("line 2"),
        "{stderr}"
    );

    std::fs::write(dir.path().join("broken.yaml"), "app_id: [unclosed\n").unwrap();
    let (code, _, stderr) = run(flarum_ws(dir.path()).args(["serve", "-c", "broken.yaml"]));
    assert_eq!(code, 1);
    assert!(
        stderr.contains("broken.yaml") && stderr.contains("line"),
        "{stderr}"
    );
}

#[test]
fn bad_environment_values_and_taken_ports_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, stderr) = run(flarum_ws(dir.path())
        .env("FLARUM_WS_ACTIVITY_TIMEOUT", "soon")
        .arg("serve"));
    assert_eq!(code, 1);
    assert!(stderr.contains("FLARUM_WS_ACTIVITY_TIMEOUT"), "{stderr}");

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let (code, _, stderr) = run(flarum_ws(dir.path()).envs(CREDENTIALS).args([
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        &port,
    ]));
    assert_eq!(code, 1);
    // The holder is named (this test process), the reason said once, and
    // the fix points where the port was set.
    let this_process = std::fs::read_to_string("/proc/self/comm").unwrap();
    assert!(
        stderr.contains("Failed to listen on tcp://127.0.0.1:")
            && stderr.contains(&format!("already used by {}", this_process.trim()))
            && stderr.contains(&format!("(pid {})", std::process::id())),
        "{stderr}"
    );
    assert_eq!(stderr.matches("already used").count(), 1, "{stderr}");
    assert!(
        stderr.contains(
            "fix: stop that process, or choose another port where it is set (the --port flag)"
        ),
        "{stderr}"
    );
}

#[tokio::test]
async fn standalone_from_dotenv_with_verbose_logs_and_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(".env"),
        format!("FLARUM_WS_APP_ID={APP_ID}\nFLARUM_WS_APP_KEY={KEY}\nFLARUM_WS_APP_SECRET={SECRET}\nFLARUM_WS_HOST=127.0.0.1\n"),
    )
    .unwrap();
    let mut running = start(flarum_ws(dir.path()).args(["serve", "--port", "0", "--verbose"]));
    let base = format!("127.0.0.1:{}", running.port);

    let mut client = Client::connect(&format!("ws://{base}/app/{KEY}?protocol=7")).await;
    client.subscribe("public").await;
    let api = Api {
        base: format!("http://{base}"),
        http: reqwest::Client::new(),
    };
    let (status, _) = api.trigger("public", "newPost", r#"{"postId":158}"#).await;
    assert_eq!(status, 200);
    assert_eq!(client.next().await["event"], "newPost");

    running.signal("TERM");
    assert_eq!(data_of(&client.next().await)["code"], 4200);
    assert_eq!(client.expect_close().await, 4200);
    let (code, lines) = running.lines_until_exit();
    assert_eq!(code, 0, "{lines:?}");

    let log = lines.join("\n");
    assert!(
        log.contains(&format!(
            "Connection id {} sending message",
            client.socket_id
        )),
        "{log}"
    );
    assert!(
        log.contains(
            r#"sending message {"event":"newPost","channel":"public","data":"{\"postId\":158}"}"#
        ),
        "{log}"
    );
    assert!(!log.contains(SECRET), "the secret leaked into the log");
}

#[tokio::test]
async fn startup_line_matches_the_old_server() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("ws.yaml"),
        format!(
            "app_id: '{APP_ID}'\napp_key: {KEY}\napp_secret: {SECRET}\nhost: 127.0.0.1\nport: 0\n"
        ),
    )
    .unwrap();
    let mut command = flarum_ws(dir.path());
    command.args(["serve", "--config", "ws.yaml"]);
    let mut child = command.stderr(Stdio::piped()).spawn().unwrap();
    let mut reader = BufReader::new(child.stderr.take().unwrap());
    let mut first = String::new();
    reader.read_line(&mut first).unwrap();
    assert!(
        first.contains("Starting the WebSocket server on port 0..."),
        "{first}"
    );
    let mut second = String::new();
    reader.read_line(&mut second).unwrap();
    assert!(
        second.contains("Listening on 127.0.0.1:") && second.contains(&format!("app id {APP_ID}")),
        "{second}"
    );
    let _ = child.kill();
    let _ = child.wait();
}

/// `--redis-url` is a flag like the others; the URL (which may hold a
/// password) is redacted by `config`, and a URL Redis cannot use stops
/// `serve` with a clear error.
#[test]
fn redis_url_flag_is_redacted_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let output = flarum_ws(dir.path())
        .envs(CREDENTIALS)
        .args(["config", "--redis-url", "redis://:hunter2@127.0.0.1:6379"])
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&output.stdout);
    let line = shown
        .lines()
        .find(|l| l.starts_with("redis_url"))
        .unwrap_or_else(|| panic!("{shown}"));
    assert!(
        line.contains("<redacted>") && line.contains("command-line flag"),
        "{line}"
    );
    assert!(!shown.contains("hunter2"));

    let (code, _, stderr) = run(flarum_ws(dir.path()).envs(CREDENTIALS).args([
        "serve",
        "--port",
        "0",
        "--redis-url",
        "http://:hunter2@nowhere",
    ]));
    assert_eq!(code, 1);
    assert!(stderr.contains("invalid redis_url"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

/// Item 16 of the check audit: a SIGHUP that changes the port warns (it
/// needs a restart); a second one that puts it back is no change.
#[test]
fn a_port_put_back_before_a_restart_is_no_change() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let yaml = |port: u16| {
        std::fs::write(
            dir.path().join("ws.yaml"),
            format!("app_id: '1'\napp_key: k\napp_secret: s\nhost: 127.0.0.1\nport: {port}\n"),
        )
        .unwrap();
    };
    yaml(port);
    let mut server = start(flarum_ws(dir.path()).args(["serve", "--config", "ws.yaml"]));
    let reload = |server: &common::process::Running| {
        server.signal("HUP");
        std::thread::sleep(std::time::Duration::from_millis(700));
    };
    yaml(port + 1);
    reload(&server);
    yaml(port);
    reload(&server);
    let log = server.stop_cleanly();
    let warned: Vec<&String> = log
        .iter()
        .filter(|l| l.contains("takes effect only after a restart"))
        .collect();
    assert_eq!(warned.len(), 1, "{log:#?}");
    assert!(
        warned[0].contains(&format!("port is now {}", port + 1))
            && warned[0].contains(&format!("still serving {port}")),
        "{warned:?}"
    );
    assert_eq!(
        log.iter()
            .filter(|l| l.contains("Settings reloaded"))
            .count(),
        2,
        "{log:#?}"
    );
}

/// Every setting marked `=> restart` (what is bound, opened or started
/// once) keeps serving its old value through a real SIGHUP, the reload
/// naming each change and the file it came from, while a setting that
/// needs no restart is applied at once. What serves is read from `/about`
/// and from what the server does: the old port and no metrics listener,
/// no verbose line for a new connection, text log lines.
#[tokio::test]
async fn a_reload_holds_every_restart_setting_and_names_its_source() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let metrics_port = free_port();
    let base = "app_id: '1'\napp_key: k\napp_secret: s\n";
    let yaml =
        |extra: &str| std::fs::write(dir.path().join("ws.yaml"), format!("{base}{extra}")).unwrap();
    let changes: Vec<(&str, String)> = vec![
        ("host", "host: 0.0.0.0".into()),
        ("port", format!("port: {}", port + 1)),
        ("verbose", "verbose: true".into()),
        ("reverse_proxy", "reverse_proxy: true".into()),
        ("tls_cert", "tls_cert: /nowhere/cert.pem".into()),
        ("tls_key", "tls_key: /nowhere/key.pem".into()),
        ("tls_passphrase", "tls_passphrase: hunter2".into()),
        ("statistics_interval", "statistics_interval: 60".into()),
        ("statistics", "statistics: false".into()),
        (
            "metrics_listen",
            format!("metrics_listen: 127.0.0.1:{metrics_port}"),
        ),
        ("log_format", "log_format: json".into()),
        ("redis_url", "redis_url: redis://127.0.0.1:1".into()),
        ("redis_prefix", "redis_prefix: other".into()),
        ("redis_ca_file", "redis_ca_file: /nowhere/ca.pem".into()),
        (
            "redis_client_cert",
            "redis_client_cert: /nowhere/client.pem".into(),
        ),
        (
            "redis_client_key",
            "redis_client_key: /nowhere/client.key".into(),
        ),
        ("webhook_url", "webhook_url: http://127.0.0.1:9/hook".into()),
        (
            "webhooks",
            "webhooks: [{url: 'http://127.0.0.1:9/other', events: [member_added]}]".into(),
        ),
    ];
    let restart_rows: Vec<&str> = flarum_ws::config::ROWS
        .iter()
        .filter(|row| row.restart)
        .map(|row| row.key)
        .collect();
    let changed_keys: Vec<&str> = changes.iter().map(|(key, _)| *key).collect();
    assert_eq!(
        changed_keys, restart_rows,
        "give this test a change for each restart row"
    );

    yaml(&format!("host: 127.0.0.1\nport: {port}\n"));
    let mut server = start(flarum_ws(dir.path()).args(["serve", "--config", "ws.yaml"]));
    let in_force = |port: u16| -> BTreeMap<String, (Value, String)> {
        let (status, body) = http_get(port, "/about");
        assert_eq!(status, 200, "{body}");
        let about: Value = serde_json::from_str(&body).unwrap();
        about["settings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                let source = s["source"].as_str().unwrap().to_owned();
                (
                    s["key"].as_str().unwrap().to_owned(),
                    (s["value"].clone(), source),
                )
            })
            .collect()
    };
    let before = in_force(port);
    assert_eq!(before["port"].0, port.to_string(), "{before:?}");

    let lines: Vec<String> = changes.iter().map(|(_, line)| line.clone()).collect();
    yaml(&format!(
        "{}\nmax_event_data_bytes: 2048\n",
        lines.join("\n")
    ));
    server.signal("HUP");
    let reload = server.wait_for_line("Settings reloaded", Duration::from_secs(10));
    for key in &restart_rows {
        let warned = reload
            .iter()
            .find(|l| l.contains(&format!("the setting {key} is now ")))
            .unwrap_or_else(|| panic!("no restart warning for {key}: {reload:#?}"));
        assert!(
            warned.contains(&format!("(`{key}:` in ")) && warned.contains("ws.yaml)"),
            "{warned}"
        );
    }
    assert!(!reload.iter().any(|l| l.contains("hunter2")), "{reload:#?}");

    let after = in_force(port);
    for key in &restart_rows {
        assert_eq!(after[*key], before[*key], "{key} changed before a restart");
    }
    assert_eq!(after["max_event_data_bytes"].0, "2048");
    assert!(
        after["max_event_data_bytes"].1.contains("ws.yaml"),
        "{after:?}"
    );
    assert_eq!(http_get(port + 1, "/up").0, 0, "the new port listens");
    assert_eq!(
        http_get(metrics_port, "/metrics").0,
        0,
        "the metrics listener opened"
    );
    let mut tab = Client::connect(&format!("ws://127.0.0.1:{port}/app/k?protocol=7")).await;
    tab.subscribe("news").await;
    drop(tab);

    let log = server.stop_cleanly();
    let after_reload: Vec<&String> = log
        .iter()
        .skip_while(|l| !l.contains("reloading settings"))
        .collect();
    assert!(
        !after_reload
            .iter()
            .any(|l| l.contains("New connection opened")),
        "verbose before a restart: {after_reload:#?}"
    );
    assert!(
        after_reload
            .iter()
            .all(|l| !l.trim_start().starts_with('{')),
        "JSON lines before a restart: {after_reload:#?}"
    );
}

/// The man pages carry ENVIRONMENT, FILES and EXIT STATUS (with the codes
/// of each command), and bash completes each subcommand's own options:
/// the files the package installs, written by `flarum-ws generate`.
#[test]
fn man_pages_and_bash_completion_cover_each_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    for what in ["man", "completions"] {
        let (code, _, stderr) = run(flarum_ws(dir.path()).args(["generate", what, "out"]));
        assert_eq!(code, 0, "{stderr}");
    }
    let out = dir.path().join("out");
    let check = std::fs::read_to_string(out.join("flarum-ws-check.1")).unwrap();
    for section in [".SH ENVIRONMENT", ".SH FILES", ".SH \"EXIT STATUS\""] {
        assert!(check.contains(section), "{section} missing:\n{check}");
    }
    assert!(
        check.contains("FLARUM_WS_ROOT")
            && check.contains("/etc/default/flarum\\-ws")
            && check.contains("The checks could not run"),
        "{check}"
    );
    let serve = std::fs::read_to_string(out.join("flarum-ws-serve.1")).unwrap();
    assert!(
        serve.contains("FLARUM_WS_PORT") && serve.contains("75"),
        "{serve}"
    );

    // What bash offers after `flarum-ws SUBCOMMAND --<TAB>`.
    let complete = |words: &str| {
        let script = format!(
            "source {}; COMP_WORDS=({words}); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1)); _flarum__ws flarum-ws \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"; echo \"${{COMPREPLY[*]}}\"",
            out.join("flarum-ws.bash").display()
        );
        let output = Command::new("bash").args(["-c", &script]).output().unwrap();
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let offered = complete("flarum-ws check --");
    assert!(
        offered.contains("--live") && offered.contains("--user") && offered.contains("--unit"),
        "{offered}"
    );
    let offered = complete("flarum-ws nginx-snippet --");
    assert!(
        !offered.contains("--live") && offered.contains("--help"),
        "{offered}"
    );
    let offered = complete("flarum-ws ch");
    assert!(offered.contains("check"), "{offered}");
    // A value with a fixed set completes to that set, not to file names.
    let offered = complete("flarum-ws check --log-format ''");
    assert_eq!(offered.trim(), "text json", "{offered}");
}
