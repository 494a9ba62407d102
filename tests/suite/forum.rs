//! `flarum-ws serve` run from a Flarum forum root against real MariaDB,
//! PostgreSQL and SQLite databases holding Flarum's settings schema, with
//! config.php written by real PHP. The servers are started by
//! tests/services/start.sh (tests/run-all.sh does that).

use crate::common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::common::databases::{
    Server, admin, config_php_database, exec, fresh_database, password, service_var,
    write_config_php,
};
use crate::common::process::{BrowserTab, Running, flarum_ws, free_port, run, start};
use crate::common::*;
use serde_json::{Value, json};
use sqlx::{AssertSqlSafe, Connection};

/// A forum root: config.php written by PHP's var_export, a fresh database
/// with Flarum's settings and statistics tables under `prefix`, and `rows`.
async fn forum(db: Server, prefix: &str, rows: &[(&'static str, String)]) -> tempfile::TempDir {
    let (root, name, mut conn) = fresh_database(db, "forum").await;
    let (q, settings_ddl, stats_id) = match db {
        Server::MariaDb => (
            "`",
            "`key` varchar(100) NOT NULL PRIMARY KEY, `value` longtext NULL",
            "id int unsigned AUTO_INCREMENT PRIMARY KEY",
        ),
        Server::Postgres => (
            "\"",
            "\"key\" varchar(100) NOT NULL PRIMARY KEY, \"value\" text NULL",
            "id serial PRIMARY KEY",
        ),
        Server::Sqlite => (
            "\"",
            "\"key\" varchar(100) NOT NULL PRIMARY KEY, \"value\" text NULL",
            "id integer PRIMARY KEY AUTOINCREMENT",
        ),
    };
    exec(
        &mut conn,
        format!("CREATE TABLE {q}{prefix}settings{q} ({settings_ddl})"),
    )
    .await;
    exec(
        &mut conn,
        format!(
            "CREATE TABLE {q}{prefix}websockets_statistics_entries{q} ({stats_id}, app_id varchar(191) NOT NULL, \
             peak_connection_count int NOT NULL, websocket_message_count int NOT NULL, api_message_count int NOT NULL, \
             created_at timestamp NULL, updated_at timestamp NULL)"
        ),
    )
    .await;
    for (key, value) in rows {
        let escaped = value.replace('\'', "''");
        exec(
            &mut conn,
            format!("INSERT INTO {q}{prefix}settings{q} VALUES ('{key}', '{escaped}')"),
        )
        .await;
    }
    exec(
        &mut conn,
        format!("INSERT INTO {q}{prefix}settings{q} VALUES ('mail_driver', NULL)"),
    )
    .await;
    conn.close().await.unwrap();

    // A Postgres forum without a prefix is written with a null one.
    let written_prefix = if db == Server::Postgres && prefix.is_empty() {
        Value::Null
    } else {
        json!(prefix)
    };
    let database = config_php_database(db, &name, "mysql", written_prefix);
    write_config_php(
        root.path(),
        &json!({"debug": false, "database": database, "url": "https://forum.example", "paths": {"api": "api", "admin": "admin"}}),
    );
    root
}

/// The app key the forums made here store in their settings table.
const FORUM_KEY: &str = "forumkey0123456789abcdefghijklmn";

/// A forum holding the extension's credentials, `flarum-ws serve` started
/// in it with no other configuration, and a client subscribed to `public`.
async fn serving_forum(db: Server, prefix: &str) -> (tempfile::TempDir, Running, Client) {
    let port = free_port();
    let root = forum(db, prefix, &credentials(port)).await;
    let server = start(flarum_ws(root.path()).arg("serve"));
    let mut client =
        Client::connect(&format!("ws://127.0.0.1:{port}/app/{FORUM_KEY}?protocol=7")).await;
    client.subscribe("public").await;
    (root, server, client)
}

fn credentials(port: u16) -> Vec<(&'static str, String)> {
    vec![
        ("kyrne-websocket.app_id", "815".into()),
        ("kyrne-websocket.app_key", FORUM_KEY.into()),
        ("kyrne-websocket.app_secret", SECRET.into()),
        ("kyrne-websocket.app_port", port.to_string()),
        ("kyrne-websocket.reverse_proxy", "1".into()),
        ("kyrne-websocket.app_statistics-interval", "1".into()),
    ]
}

fn api_for(port: u16, key: &str, secret: &str) -> (String, String, String) {
    (
        format!("http://127.0.0.1:{port}"),
        key.to_owned(),
        secret.to_owned(),
    )
}

/// Triggers an event as the forum would, with the given credentials.
async fn trigger(
    port: u16,
    app_id: &str,
    key: &str,
    secret: &str,
    channel: &str,
    event: &str,
    data: &str,
) -> u16 {
    let (base, key, secret) = api_for(port, key, secret);
    let path = format!("/apps/{app_id}/events");
    let body = json!({"name": event, "channel": channel, "data": data}).to_string();
    let query = flarum_ws::protocol::signature::signed_query(
        "POST",
        &path,
        &key,
        &secret,
        body.as_bytes(),
        unix_now(),
        &[],
    );
    reqwest::Client::new()
        .post(format!("{base}{path}?{query}"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn end_to_end(db: Server, prefix: &str) {
    let port = free_port();
    let rows = credentials(port);
    let root = forum(db, prefix, &rows).await;
    let server = start(flarum_ws(root.path()).arg("serve"));
    assert_eq!(
        server.port, port,
        "the port comes from kyrne-websocket.app_port"
    );

    let key = FORUM_KEY;
    let mut tab = BrowserTab::open("8", port, key, "public", "newPost", None);
    assert_eq!(tab.line(), "subscribed", "{db:?} {prefix:?}");
    let status = trigger(
        port,
        "815",
        key,
        SECRET,
        "public",
        "newPost",
        r#"{"postId":158,"discussionId":43,"tagIds":[1]}"#,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&tab.line()).unwrap(),
        json!({"postId":158,"discussionId":43,"tagIds":[1]})
    );
    assert!(tab.child.wait().unwrap().success());

    // A statistics row arrives within a couple of intervals (1 s here).
    let mut client = Client::connect(&format!("ws://127.0.0.1:{port}/app/{key}?protocol=7")).await;
    client.subscribe("public").await;
    let mut rows_found = 0;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        rows_found = statistics_rows(db, prefix, root.path()).await;
        if rows_found > 0 {
            break;
        }
    }
    assert!(
        rows_found > 0,
        "no statistics row written for {db:?} {prefix:?}"
    );
    drop(server);
}

/// The database a forum made by [`forum`] uses (for SQLite, its file stem).
fn database_name(root: &Path) -> String {
    let config = std::fs::read_to_string(root.join("config.php")).unwrap();
    let quoted = config.split("'database' => '").nth(1).unwrap();
    let name = quoted.split('\'').next().unwrap();
    name.trim_start_matches("storage/")
        .trim_end_matches(".sqlite")
        .to_owned()
}

async fn statistics_rows(db: Server, prefix: &str, root: &Path) -> i64 {
    let name = database_name(root);
    let mut conn = admin(db, &name, root).await;
    let q = if db == Server::MariaDb { "`" } else { "\"" };
    let sql = format!(
        "SELECT COUNT(*) FROM {q}{prefix}websockets_statistics_entries{q} WHERE peak_connection_count >= 1 AND app_id = '815'"
    );
    let row: (i64,) = sqlx::query_as(AssertSqlSafe(sql))
        .fetch_one(&mut conn)
        .await
        .unwrap();
    row.0
}

/// Waits (up to 10 s) until the forum (no prefix) has more than `before`
/// statistics rows.
async fn wait_for_more_statistics_rows(db: Server, root: &Path, before: i64) {
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        if statistics_rows(db, "", root).await > before {
            return;
        }
    }
    panic!("statistics rows did not resume on {db:?}");
}

#[tokio::test]
#[ignore = "needs MariaDB from tests/services/start.sh, php-cli and the npm packages of tests/conformance"]
async fn serves_a_mariadb_forum_with_each_prefix() {
    for prefix in ["", "flarum_", "pre"] {
        end_to_end(Server::MariaDb, prefix).await;
    }
}

#[tokio::test]
#[ignore = "needs PostgreSQL from tests/services/start.sh, php-cli and the npm packages of tests/conformance"]
async fn serves_a_postgresql_forum_with_each_prefix() {
    for prefix in ["", "flarum_", "pre"] {
        end_to_end(Server::Postgres, prefix).await;
    }
}

#[tokio::test]
#[ignore = "needs php-cli and the npm packages of tests/conformance"]
async fn serves_a_sqlite_forum_with_each_prefix() {
    for prefix in ["", "flarum_", "pre"] {
        end_to_end(Server::Sqlite, prefix).await;
    }
}

const HAND_WRITTEN: &str = r#"<?php
// Written by hand, with the database file from the environment.
$file = getenv('FORUM_DB_FILE');
return [
    'debug' => true,
    'database' => ['driver' => 'sqlite', 'database' => $file, 'prefix' => 'pre',],
    'url' => "https://forum.example",
];
"#;

#[tokio::test]
#[ignore = "needs php-cli"]
async fn computed_config_php_is_evaluated_by_php_or_refused_with_its_line() {
    let rows = credentials(free_port());
    let root = forum(Server::Sqlite, "pre", &rows).await;
    let generated = std::fs::read_to_string(root.path().join("config.php")).unwrap();
    let file = generated
        .split("'database' => 'storage/")
        .nth(1)
        .unwrap()
        .split('\'')
        .next()
        .unwrap();
    std::fs::write(root.path().join("config.php"), HAND_WRITTEN).unwrap();

    let (code, stdout, stderr) = run(flarum_ws(root.path())
        .env("FORUM_DB_FILE", format!("storage/{file}"))
        .arg("config"));
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("\"815\"")
            && stdout.contains("settings table presettings (key kyrne-websocket.app_id)"),
        "{stdout}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("verbose") && l.contains("true")),
        "debug turns on verbose: {stdout}"
    );
    assert!(!stdout.contains(SECRET), "secret printed: {stdout}");

    let (code, _, stderr) = run(flarum_ws(root.path())
        .env("PATH", "/nonexistent")
        .env("FORUM_DB_FILE", format!("storage/{file}"))
        .arg("config"));
    assert_eq!(code, 1);
    assert!(
        stderr.contains("config.php line 3")
            && stderr.contains("php")
            && stderr.contains("FLARUM_WS_"),
        "{stderr}"
    );
}

#[tokio::test]
#[ignore = "needs MariaDB and PostgreSQL from tests/services/start.sh, and php-cli"]
async fn forum_errors_say_what_is_wrong() {
    let rows = credentials(free_port());

    // The database server is not there.
    let root = forum(Server::MariaDb, "", &rows).await;
    let config = std::fs::read_to_string(root.path().join("config.php")).unwrap();
    let port = service_var("TEST_DB_MYSQL_PORT");
    let closed = free_port().to_string();
    std::fs::write(
        root.path().join("config.php"),
        config.replace(&format!("'port' => {port}"), &format!("'port' => {closed}")),
    )
    .unwrap();
    let (code, _, stderr) = run(flarum_ws(root.path()).arg("serve"));
    assert_eq!(code, 1);
    assert!(
        stderr.contains(&format!("127.0.0.1:{closed}")) && stderr.contains("user `flarum`"),
        "{stderr}"
    );
    assert!(
        !stderr.contains(&password()),
        "password in the message: {stderr}"
    );

    // The prefix in config.php does not match the tables.
    std::fs::write(
        root.path().join("config.php"),
        config.replace("'prefix' => ''", "'prefix' => 'wrong_'"),
    )
    .unwrap();
    let (code, _, stderr) = run(flarum_ws(root.path()).arg("serve"));
    assert_eq!(code, 1);
    assert!(
        stderr.contains("no table `wrong_settings`") && stderr.contains("prefix"),
        "{stderr}"
    );

    // The extension's settings were never saved.
    let empty = forum(Server::Sqlite, "", &[]).await;
    let (code, _, stderr) = run(flarum_ws(empty.path()).arg("serve"));
    assert_eq!(code, 1);
    assert!(
        stderr.contains("app_id, app_key, app_secret not set") && stderr.contains("admin panel"),
        "{stderr}"
    );

    // Broken config.php, unknown driver, and a root without config.php.
    std::fs::write(empty.path().join("config.php"), "<?php return [\n  'database' => [\n    'driver' => 'sqlite'\n    'database' => 'x',\n  ],\n];").unwrap();
    let (code, _, stderr) = run(flarum_ws(empty.path()).arg("serve"));
    assert_eq!(code, 1);
    assert!(
        stderr.contains("config.php: syntax error on line 4"),
        "{stderr}"
    );
    std::fs::write(
        empty.path().join("config.php"),
        "<?php return ['database' => ['driver' => 'oracle', 'database' => 'x']];",
    )
    .unwrap();
    let (code, _, stderr) = run(flarum_ws(empty.path()).arg("serve"));
    assert_eq!(code, 1);
    assert!(stderr.contains("\"oracle\" is not supported"), "{stderr}");
    let nowhere = tempfile::tempdir().unwrap();
    let (code, _, stderr) = run(flarum_ws(nowhere.path()).args(["serve", "--root", "."]));
    assert_eq!(code, 1);
    assert!(stderr.contains("no config.php"), "{stderr}");
}

#[tokio::test]
#[ignore = "needs php-cli"]
async fn a_missing_certificate_file_is_a_startup_error() {
    let mut rows = credentials(free_port());
    rows.retain(|(k, _)| *k != "kyrne-websocket.reverse_proxy");
    rows.push(("kyrne-websocket.local_cert", "/etc/ssl/forum.pem".into()));
    let root = forum(Server::Sqlite, "", &rows).await;
    let (code, _, stderr) = run(flarum_ws(root.path()).arg("serve"));
    assert_eq!(code, 1);
    assert!(
        stderr.contains("/etc/ssl/forum.pem does not exist")
            && stderr.contains("fix: check the path"),
        "{stderr}"
    );
}

#[tokio::test]
#[ignore = "needs MariaDB from tests/services/start.sh and php-cli"]
async fn sighup_applies_a_new_secret_without_dropping_connections() {
    let (root, server, mut client) = serving_forum(Server::Postgres, "flarum_").await;
    let (port, key) = (server.port, FORUM_KEY);

    let mut conn = admin(Server::Postgres, &database_name(root.path()), root.path()).await;
    exec(&mut conn, "UPDATE flarum_settings SET value = 'rotated-secret' WHERE key = 'kyrne-websocket.app_secret'".into()).await;
    server.signal("HUP");

    let mut status = 0;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        status = trigger(
            port,
            "815",
            key,
            "rotated-secret",
            "public",
            "afterReload",
            "1",
        )
        .await;
        if status == 200 {
            break;
        }
    }
    assert_eq!(status, 200, "the new secret was not applied");
    assert_eq!(
        client.next().await["event"],
        "afterReload",
        "the connection survived the reload"
    );
    assert_eq!(
        trigger(port, "815", key, SECRET, "public", "x", "1").await,
        401
    );
}

#[tokio::test]
#[ignore = "needs php-cli"]
async fn a_failing_statistics_write_loses_only_that_row_and_serving_goes_on() {
    let (root, mut server, mut client) = serving_forum(Server::Sqlite, "").await;
    let (port, key) = (server.port, FORUM_KEY);

    // The writer looks for the table once, after the server starts listening:
    // take it away only once the writer has found it.
    server.wait_for_line("Writing statistics", Duration::from_secs(10));

    // Take the table away under the running server, then give it back.
    let mut conn = admin(Server::Sqlite, &database_name(root.path()), root.path()).await;
    exec(
        &mut conn,
        "ALTER TABLE websockets_statistics_entries RENAME TO parked".into(),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        trigger(port, "815", key, SECRET, "public", "during", "1").await,
        200
    );
    assert_eq!(client.next().await["event"], "during");
    exec(
        &mut conn,
        "ALTER TABLE parked RENAME TO websockets_statistics_entries".into(),
    )
    .await;
    let before = statistics_rows(Server::Sqlite, "", root.path()).await;
    // Up to 30 s: rows come every second, but this runs beside the other
    // tests, which may keep both cores busy.
    let mut written = 0;
    for _ in 0..120 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        written = statistics_rows(Server::Sqlite, "", root.path()).await;
        if written > before {
            break;
        }
    }
    let log = server.stop_cleanly();
    assert!(written > before, "statistics did not resume: {log:?}");
    assert!(
        log.iter()
            .any(|l| l.contains("cannot write statistics") && l.contains("serving continues")),
        "{log:?}"
    );
}

/// The forum's MariaDB goes away under the running server (its connections
/// reset, new ones refused) and comes back: websocket clients and the HTTP
/// API keep working, the log says what failed, a reload during the outage
/// keeps the settings in force, and statistics rows resume afterwards.
// Multi-threaded: `start` blocks its thread while the forwarder must run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs MariaDB from tests/services/start.sh and php-cli"]
async fn the_database_going_away_and_coming_back_is_survived() {
    let mysql_port: u16 = service_var("TEST_DB_MYSQL_PORT").parse().unwrap();
    let outage = common::outage::Outage::forward_to(mysql_port).await;
    let port = free_port();
    let root = forum(Server::MariaDb, "", &credentials(port)).await;
    let config = std::fs::read_to_string(root.path().join("config.php")).unwrap();
    let through_outage = config.replace(
        &format!("'port' => {mysql_port},"),
        &format!("'port' => {},", outage.port),
    );
    assert_ne!(config, through_outage, "config.php names the port");
    std::fs::write(root.path().join("config.php"), through_outage).unwrap();

    let mut server = start(flarum_ws(root.path()).arg("serve"));
    let mut client =
        Client::connect(&format!("ws://127.0.0.1:{port}/app/{FORUM_KEY}?protocol=7")).await;
    client.subscribe("public").await;

    outage.go_down();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    server.signal("HUP");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        trigger(port, "815", FORUM_KEY, SECRET, "public", "during", "1").await,
        200
    );
    assert_eq!(client.next().await["event"], "during");
    let mut late =
        Client::connect(&format!("ws://127.0.0.1:{port}/app/{FORUM_KEY}?protocol=7")).await;
    late.subscribe("public").await;

    outage.come_back();
    let before = statistics_rows(Server::MariaDb, "", root.path()).await;
    wait_for_more_statistics_rows(Server::MariaDb, root.path(), before).await;
    let log = server.stop_cleanly();
    let has = |needle: &str| log.iter().any(|l| l.contains(needle));
    assert!(has("statistics are lost, serving continues"), "{log:?}");
    assert!(
        has("reload failed, keeping the current settings"),
        "{log:?}"
    );
    assert!(has("The forum database answers again"), "{log:?}");
    assert!(
        !log.iter().any(|l| l.contains(&password())),
        "the password never appears: {log:?}"
    );
}

/// A tmpfs mounted for one test, unmounted when dropped.
struct SmallDisk {
    path: std::path::PathBuf,
}

impl SmallDisk {
    fn mount(path: &Path, size: &str) -> Self {
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .status()
            .expect("mount");
        assert!(
            status.success(),
            "mounting a small tmpfs needs root (CI runs as root): mount -t tmpfs failed"
        );
        Self {
            path: path.to_owned(),
        }
    }

    /// Fills the disk with one file until writing fails with "no space".
    fn fill(&self) -> std::path::PathBuf {
        use std::io::Write;
        let filler = self.path.join("filler");
        let mut file = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 4096];
        loop {
            if let Err(error) = file.write_all(&chunk).and_then(|_| file.sync_all()) {
                assert_eq!(error.raw_os_error(), Some(28), "ENOSPC: {error}");
                return filler;
            }
        }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// The disk holding a SQLite forum fills up while the server writes
/// statistics: serving goes on, the log says what failed, and rows resume
/// once space is freed.
#[tokio::test]
#[ignore = "needs root (mounts a tmpfs) and php-cli"]
async fn a_full_disk_loses_statistics_rows_but_not_the_service() {
    let port = free_port();
    let root = forum(Server::Sqlite, "", &credentials(port)).await;
    let storage = root.path().join("storage");
    let file = format!("{}.sqlite", database_name(root.path()));
    let parked = root.path().join(&file);
    std::fs::rename(storage.join(&file), &parked).unwrap();
    let disk = SmallDisk::mount(&storage, "1m");
    std::fs::copy(&parked, storage.join(&file)).unwrap();

    let mut server = start(flarum_ws(root.path()).arg("serve"));
    let mut client =
        Client::connect(&format!("ws://127.0.0.1:{port}/app/{FORUM_KEY}?protocol=7")).await;
    client.subscribe("public").await;
    let filler = disk.fill();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        trigger(port, "815", FORUM_KEY, SECRET, "public", "while-full", "1").await,
        200
    );
    assert_eq!(client.next().await["event"], "while-full");

    let before = statistics_rows(Server::Sqlite, "", root.path()).await;
    std::fs::remove_file(filler).unwrap();
    wait_for_more_statistics_rows(Server::Sqlite, root.path(), before).await;
    let log = server.stop_cleanly();
    let has = |needle: &str| log.iter().any(|l| l.contains(needle));
    assert!(has("statistics are lost, serving continues"), "{log:?}");
    assert!(has("The forum database answers again"), "{log:?}");
    drop(disk);
}

/// Items 6, 12 and 13 of the check audit, on each database server: a wrong
/// table prefix names the right one; a `getenv()` password whose variable
/// is unset is named with its line; a stopped server or a refused password
/// is reported at once with the driver's own reason (not a pool timeout
/// after 10 s), by `check` and by `serve`.
#[tokio::test]
#[ignore = "needs MariaDB and PostgreSQL from tests/services/start.sh, and php-cli"]
async fn database_problems_are_named_by_their_cause() {
    use common::checking::{assert_finding, assert_in_troubleshooting, check_json, finding};
    for db in [Server::MariaDb, Server::Postgres, Server::Sqlite] {
        let root = forum(db, "flarum_", &credentials(free_port())).await;
        let config = std::fs::read_to_string(root.path().join("config.php")).unwrap();
        let unprefixed = if db == Server::Postgres {
            config.replace("'prefix' => 'flarum_'", "'prefix' => NULL")
        } else {
            config.replace("'prefix' => 'flarum_'", "'prefix' => ''")
        };
        assert_ne!(unprefixed, config);
        std::fs::write(root.path().join("config.php"), &unprefixed).unwrap();
        let (code, findings) = check_json(&mut flarum_ws(root.path()), &[]);
        assert_eq!(code, 1, "{db:?}");
        let settings = finding(&findings, "settings");
        assert_finding(
            settings,
            "fail",
            "has no table `settings` (it has flarum_settings)",
            "set 'prefix' => 'flarum_' in config.php's database block",
        );
        assert!(
            !settings["fix"].as_str().unwrap().contains("extension's"),
            "{settings}"
        );
        assert_in_troubleshooting(settings);
    }

    for db in [Server::MariaDb, Server::Postgres] {
        let root = forum(db, "", &credentials(free_port())).await;
        let config = std::fs::read_to_string(root.path().join("config.php")).unwrap();
        // The password from the environment, as many deployments write it.
        let from_env = config.replace(
            &format!("'password' => '{}'", password()),
            "'password' => getenv('DB_PASSWORD')",
        );
        assert_ne!(from_env, config);
        std::fs::write(root.path().join("config.php"), &from_env).unwrap();
        let line = from_env
            .lines()
            .position(|l| l.contains("getenv('DB_PASSWORD')"))
            .unwrap()
            + 1;
        let (code, findings) = check_json(flarum_ws(root.path()).env_remove("DB_PASSWORD"), &[]);
        assert_eq!(code, 1, "{db:?}");
        let database = finding(&findings, "database");
        assert_finding(
            database,
            "fail",
            &format!("config.php line {line} reads DB_PASSWORD, which is not set for flarum-ws"),
            "set DB_PASSWORD for flarum-ws as for PHP (under systemd, in /etc/default/flarum-ws: DB_PASSWORD=...)",
        );
        assert!(
            database["message"]
                .as_str()
                .unwrap()
                .contains("the server refused the user and password"),
            "{database}"
        );
        assert_in_troubleshooting(database);
        let (code, findings) =
            check_json(flarum_ws(root.path()).env("DB_PASSWORD", password()), &[]);
        assert_eq!(
            finding(&findings, "database")["status"],
            "pass",
            "{findings:#?}"
        );
        assert_eq!(code, 0, "{findings:#?}");

        // The server stopped (nothing listens on the port any more).
        let port = match db {
            Server::MariaDb => service_var("TEST_DB_MYSQL_PORT"),
            _ => service_var("TEST_DB_PG_PORT"),
        };
        let closed = free_port().to_string();
        let stopped = config
            .replace(&format!("'port' => {port}"), &format!("'port' => {closed}"))
            .replace(
                &format!("'port' => '{port}'"),
                &format!("'port' => '{closed}'"),
            );
        assert_ne!(stopped, config);
        std::fs::write(root.path().join("config.php"), &stopped).unwrap();
        let began = std::time::Instant::now();
        let (code, findings) = check_json(&mut flarum_ws(root.path()), &[]);
        let took = began.elapsed();
        assert_eq!(code, 1);
        let database = finding(&findings, "database");
        assert_finding(
            database,
            "fail",
            &format!("nothing listens at 127.0.0.1:{closed} (connection refused)"),
            "start the database server",
        );
        assert_in_troubleshooting(database);
        // Reported as it happens, not after the pool's 10 s timeout.
        assert!(took < Duration::from_secs(5), "{db:?} took {took:?}");
        let (code, _, stderr) = run(flarum_ws(root.path()).arg("serve"));
        assert_eq!(code, 1);
        assert!(
            stderr.contains("connection refused")
                && stderr.contains("fix: start the database server")
                && !stderr.contains("pool timed out"),
            "{stderr}"
        );

        // A hung server: its port takes connections (the kernel completes
        // them, as for a stopped mariadbd) and nothing answers. Blamed on
        // the server, not on a firewall.
        if db == Server::MariaDb {
            let hung = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let hung_port = hung.local_addr().unwrap().port().to_string();
            std::fs::write(
                root.path().join("config.php"),
                stopped.replace(&closed, &hung_port),
            )
            .unwrap();
            let (code, findings) = check_json(&mut flarum_ws(root.path()), &[]);
            assert_eq!(code, 1);
            let database = finding(&findings, "database");
            assert_finding(
                database,
                "fail",
                &format!(
                    "127.0.0.1:{hung_port} accepted the connection but the database server did not answer within 10 s"
                ),
                "the database server is hung or overloaded",
            );
            assert_in_troubleshooting(database);
            drop(hung);
        }
    }
}

/// `'host' => 'localhost'` with MariaDB listening on its socket only (no
/// TCP on 3306): PHP connects through the server's socket, and so does
/// flarum-ws. Run in a mount namespace whose /run/mysqld holds the test
/// server's socket where Debian's MariaDB puts it.
#[tokio::test]
#[ignore = "needs MariaDB, php-cli and root (a mount namespace for /run/mysqld)"]
async fn localhost_mysql_goes_through_the_socket_as_php_does() {
    let root = forum(Server::MariaDb, "", &credentials(free_port())).await;
    let config = std::fs::read_to_string(root.path().join("config.php")).unwrap();
    let port = service_var("TEST_DB_MYSQL_PORT");
    let localhost = config
        .replace("'host' => '127.0.0.1'", "'host' => 'localhost'")
        .replace(&format!("'port' => {port},"), "");
    assert_ne!(config, localhost, "{config}");
    std::fs::write(root.path().join("config.php"), localhost).unwrap();
    let socket = service_var("TEST_DB_MYSQL_SOCKET");
    let binary = env!("CARGO_BIN_EXE_flarum-ws");
    let output = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(format!(
            "mkdir -p /run/mysqld && mount -t tmpfs tmpfs /run/mysqld && ln -s {socket} /run/mysqld/mysqld.sock && exec {binary} check --json"
        ))
        .current_dir(root.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap())
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&output.stderr)));
    let findings = report["checks"].as_array().unwrap();
    let database = findings.iter().find(|f| f["check"] == "database").unwrap();
    assert_eq!(database["status"], "pass", "{findings:#?}");
}
