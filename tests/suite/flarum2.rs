//! Flarum 2 forums (flarum/realtime) served from their root with no other
//! configuration: config.php written by real PHP (with and without a
//! `websocket` array), tables shaped as Flarum 2's migrations make them on
//! SQLite, MariaDB and PostgreSQL, the forum side triggering with the md5
//! credentials through the npm `pusher` SDK and raw signed requests (the
//! single `channel` field pusher-php-server sends), and browser tabs running
//! pusher-js 7 configured as the extension's Application.ts configures it.

use crate::common;

use std::io::Write;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::Duration;

use crate::common::databases::{
    Server, admin, config_php_database, exec, fresh_database, write_config_php,
};
use crate::common::process::{Running, flarum_ws, free_port, start};
use serde_json::{Value, json};

/// The forum's public address in these tests.
const FORUM_URL: &str = "https://forum.example";

/// `php -r 'echo md5(...);'`: PHP's own md5, to check that flarum-ws
/// derives the key and secret as flarum/realtime does.
fn php_md5(text: &str) -> String {
    let output = Command::new("php")
        .args(["-r", "echo md5($argv[1]);", text])
        .output()
        .expect("php-cli");
    String::from_utf8(output.stdout).unwrap()
}

/// A Flarum 2 forum root and what its PHP side would use.
struct Forum2 {
    root: tempfile::TempDir,
    /// The forum's database (on the server) or file (SQLite) name.
    db_name: String,
    port: u16,
    key: String,
    secret: String,
}

impl Forum2 {
    /// `flarum-ws check --json ARGS` run in the forum's root: the exit code
    /// and the findings.
    fn check(&self, args: &[&str]) -> (i32, Vec<Value>) {
        common::checking::check_json(&mut flarum_ws(self.root.path()), args)
    }
}

/// The users of these forums: (id, username, nickname, preferences).
/// Bob hides his online status; the others disclose it (Alice by the
/// default, with no preference stored).
const USERS: [(u32, &str, &str, Option<&str>); 4] = [
    (1, "alice", "Ally", None),
    (2, "bob", "", Some(r#"{"discloseOnline":false}"#)),
    (3, "carol", "", Some(r#"{"discloseOnline":true}"#)),
    (4, "dave", "", Some("{}")),
];

/// Builds a Flarum 2 forum on `db`: settings (flarum/realtime enabled,
/// `display_name_driver`), users, groups and permissions, discussions and
/// tags as Flarum 2's migrations create them; config.php with `websocket`
/// when given.
async fn forum2(db: Server, websocket: Option<Value>, driver: &str) -> Forum2 {
    forum2_at(db, websocket, driver, FORUM_URL).await
}

/// The same, for the forum at `url`.
async fn forum2_at(db: Server, websocket: Option<Value>, driver: &str, url: &str) -> Forum2 {
    let (root, name, mut conn) = fresh_database(db, "flarum2").await;
    let (id, blob, text, boolean) = match db {
        Server::MariaDb => (
            "int unsigned AUTO_INCREMENT PRIMARY KEY",
            "blob",
            "longtext",
            "tinyint(1)",
        ),
        Server::Postgres => ("serial PRIMARY KEY", "bytea", "text", "boolean"),
        Server::Sqlite => (
            "integer PRIMARY KEY AUTOINCREMENT",
            "blob",
            "text",
            "tinyint(1)",
        ),
    };
    let q = if db == Server::MariaDb { "`" } else { "\"" };
    let no = if db == Server::Postgres { "false" } else { "0" };
    let yes = if db == Server::Postgres { "true" } else { "1" };
    for ddl in [
        format!("CREATE TABLE settings ({q}key{q} varchar(100) NOT NULL PRIMARY KEY, {q}value{q} {text} NULL)"),
        format!("CREATE TABLE users (id {id}, username varchar(100) NOT NULL UNIQUE, nickname varchar(255) NULL, email varchar(150) NOT NULL UNIQUE, is_email_confirmed {boolean} NOT NULL DEFAULT {no}, password varchar(100) NOT NULL, preferences {blob} NULL, joined_at timestamp NULL, last_seen_at timestamp NULL)"),
        format!("CREATE TABLE {q}groups{q} (id {id}, name_singular varchar(100) NOT NULL, name_plural varchar(100) NOT NULL, color varchar(20) NULL, icon varchar(100) NULL, is_hidden {boolean} NOT NULL DEFAULT {no})"),
        "CREATE TABLE group_user (user_id int NOT NULL, group_id int NOT NULL, PRIMARY KEY (user_id, group_id))".into(),
        "CREATE TABLE group_permission (group_id int NOT NULL, permission varchar(100) NOT NULL, PRIMARY KEY (group_id, permission))".into(),
        format!("CREATE TABLE discussions (id {id}, title varchar(200) NOT NULL, comment_count int NOT NULL DEFAULT 1, user_id int NULL, created_at timestamp NULL, hidden_at timestamp NULL, is_private {boolean} NOT NULL DEFAULT {no}, is_approved {boolean} NOT NULL DEFAULT {yes})"),
        format!("CREATE TABLE tags (id {id}, name varchar(100) NOT NULL, slug varchar(100) NOT NULL, parent_id int NULL, is_restricted {boolean} NOT NULL DEFAULT {no})"),
        "CREATE TABLE discussion_tag (discussion_id int NOT NULL, tag_id int NOT NULL, PRIMARY KEY (discussion_id, tag_id))".into(),
    ] {
        exec(&mut conn, ddl).await;
    }
    let hex_literal = |text: &str| {
        let hex: String = text.bytes().map(|b| format!("{b:02x}")).collect();
        match db {
            Server::Postgres => format!("decode('{hex}', 'hex')"),
            _ => format!("X'{hex}'"),
        }
    };
    for (user, username, nickname, preferences) in USERS {
        let preferences = preferences.map_or("NULL".to_owned(), hex_literal);
        let nickname = if nickname.is_empty() {
            "NULL".to_owned()
        } else {
            format!("'{nickname}'")
        };
        exec(
            &mut conn,
            format!("INSERT INTO users (id, username, nickname, email, is_email_confirmed, password, preferences) VALUES ({user}, '{username}', {nickname}, '{username}@forum.example', {yes}, 'x', {preferences})"),
        )
        .await;
    }
    for statement in [
        format!("INSERT INTO {q}groups{q} (id, name_singular, name_plural) VALUES (1, 'Admin', 'Admins'), (2, 'Guest', 'Guests'), (3, 'Member', 'Members'), (4, 'Mod', 'Mods')"),
        "INSERT INTO group_permission VALUES (2, 'viewForum'), (3, 'viewForum'), (4, 'user.viewLastSeenAt'), (4, 'tag2.viewForum')".into(),
        "INSERT INTO group_user VALUES (3, 4)".into(),
        // 5: public; 6: in the restricted tag 2 (moderators see it); 7:
        // private; 8: in the restricted tags 2 and 3 (nobody but admins).
        "INSERT INTO discussions (id, title) VALUES (5, 'Realtime on Flarum 2'), (6, 'Staff room'), (8, 'Two locks')".into(),
        format!("INSERT INTO discussions (id, title, is_private) VALUES (7, 'A private one', {yes})"),
        format!("INSERT INTO tags (id, name, slug, is_restricted) VALUES (1, 'General', 'general', {no}), (2, 'Staff', 'staff', {yes}), (3, 'Board', 'board', {yes})"),
        "INSERT INTO discussion_tag VALUES (5, 1), (6, 2), (7, 1), (8, 2), (8, 3)".into(),
        "INSERT INTO settings VALUES ('flarum-realtime.index-typing-indicator-restricted', '1')".into(),
        "INSERT INTO settings VALUES ('extensions_enabled', '[\"flarum-tags\",\"flarum-nicknames\",\"flarum-realtime\"]')".into(),
        format!("INSERT INTO settings VALUES ('display_name_driver', '{driver}')"),
        "INSERT INTO settings VALUES ('version', '2.0.0')".into(),
    ] {
        exec(&mut conn, statement).await;
    }
    use sqlx::Connection;
    conn.close().await.unwrap();

    let database = config_php_database(db, &name, "mariadb", json!(""));
    let db_password = database["password"].as_str().unwrap_or_default().to_owned();
    let mut config = json!({"debug": false, "offline": false, "database": database, "url": url,
        "paths": {"api": "api", "admin": "admin"}, "headers": {"poweredByHeader": true, "referrerPolicy": "same-origin"}});
    let port = match websocket {
        Some(mut array) => {
            let port = free_port();
            array["server-host"] = json!("127.0.0.1");
            array["server-port"] = json!(port);
            config["websocket"] = array;
            port
        }
        None => 6001,
    };
    let host = url
        .split("://")
        .nth(1)
        .unwrap_or_default()
        .split(['/', ':'])
        .next()
        .unwrap_or_default()
        .to_owned();
    write_config_php(root.path(), &config);
    let key = config["websocket"]["app-key"]
        .as_str()
        .map_or_else(|| php_md5(&host), str::to_owned);
    let secret = config["websocket"]["app-secret"]
        .as_str()
        .map_or_else(|| php_md5(db_password.trim()), str::to_owned);
    Forum2 {
        root,
        db_name: name,
        port,
        key,
        secret,
    }
}

/// A browser tab (tests/conformance/flarum2-tab.js) allowed to join
/// `allow`, sending the forum's Origin.
struct Tab {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<Value>,
    /// Events that arrived while waiting for something else.
    pending: std::collections::VecDeque<Value>,
    name: &'static str,
}

impl Tab {
    fn open(forum: &Forum2, name: &'static str, allow: &[&str]) -> Self {
        Self::open_as(forum, name, allow, 1)
    }

    /// A tab whose presence channels are signed for the forum user `user`.
    fn open_as(forum: &Forum2, name: &'static str, allow: &[&str], user: u64) -> Self {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance/flarum2-tab.js");
        let mut child = Command::new("node")
            .arg(script)
            .args([&forum.port.to_string(), &forum.key, FORUM_URL])
            .env("APP_SECRET", &forum.secret)
            .env("ALLOW", allow.join(","))
            .env("USER_ID", user.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("node and tests/conformance's npm packages");
        let stdin = child.stdin.take().unwrap();
        let lines = common::process::json_lines(child.stdout.take().unwrap());
        let mut tab = Self {
            child,
            stdin,
            lines,
            pending: Default::default(),
            name,
        };
        let connected = tab.next();
        assert!(connected.get("connected").is_some(), "{name}: {connected}");
        tab
    }

    fn send(&mut self, command: Value) {
        writeln!(self.stdin, "{command}").unwrap();
    }

    fn next(&mut self) -> Value {
        if let Some(line) = self.pending.pop_front() {
            return line;
        }
        self.lines
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("{}: nothing within 10 s", self.name))
    }

    /// The next line that has `field`, keeping events met on the way.
    fn answer(&mut self, field: &str) -> Value {
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(10))
                .unwrap_or_else(|_| panic!("{}: no {field} within 10 s", self.name));
            if line.get(field).is_some() {
                return line;
            }
            self.pending.push_back(line);
        }
    }

    fn subscribe(&mut self, channels: &[&str]) {
        for channel in channels {
            self.send(json!({"subscribe": channel}));
            let answer = self.answer("subscribed");
            assert_eq!(answer["subscribed"], *channel, "{}: {answer}", self.name);
        }
    }

    fn typing(&mut self, channel: &str, data: Value) {
        self.send(json!({"trigger": [channel, "client-typing", data]}));
        assert_eq!(self.answer("triggered")["triggered"], true, "{}", self.name);
    }

    /// Every event until the `mark` event on `private-user=...` (sent by the
    /// forum after the typing), so that "nothing else arrived" is asserted
    /// without waiting for a timeout.
    fn events_until_mark(&mut self) -> Vec<Value> {
        let mut seen = Vec::new();
        loop {
            let line = self.next();
            if line["event"] == "mark" {
                return seen;
            }
            seen.push(line);
        }
    }
}

impl Drop for Tab {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs tests/conformance/flarum2-forum.js (the npm pusher SDK as the
/// forum's PHP side).
fn forum_side(forum: &Forum2, args: &[&str]) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance/flarum2-forum.js");
    let output = Command::new("node")
        .arg(script)
        .args([&forum.port.to_string(), &forum.key, &forum.secret])
        .args(args)
        .output()
        .expect("node");
    serde_json::from_slice(&output.stdout).unwrap_or_else(|_| {
        panic!(
            "forum side: {} {}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

/// A raw signed request as pusher-php-server 7.2 sends a single-channel
/// event: `channel`, not `channels`.
async fn php_trigger(forum: &Forum2, channel: &str, event: &str, data: &Value) -> u16 {
    let path = "/apps/1/events";
    let body = json!({"name": event, "data": data.to_string(), "channel": channel}).to_string();
    let timestamp = common::unix_now();
    let query = flarum_ws::protocol::signature::signed_query(
        "POST",
        path,
        &forum.key,
        &forum.secret,
        body.as_bytes(),
        timestamp,
        &[],
    );
    reqwest::Client::new()
        .post(format!("http://127.0.0.1:{}{path}?{query}", forum.port))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn serve(forum: &Forum2) -> Running {
    let server = start(flarum_ws(forum.root.path()).arg("serve"));
    assert_eq!(server.port, forum.port);
    server
}

/// The forum's PHP side and browser side, unchanged, talk to flarum-ws as
/// they would to `php flarum realtime:serve`.
async fn served_as_the_daemon(db: Server, websocket: Option<Value>) {
    let forum = forum2(db, websocket, "username").await;
    let (code, findings) = forum.check(&[]);
    let extension = common::checking::finding(&findings, "extension");
    assert!(
        extension["message"]
            .as_str()
            .unwrap()
            .contains("flarum/realtime (flarum-realtime, Flarum 2)"),
        "{extension}"
    );
    assert!(
        common::checking::finding(&findings, "credentials")["message"]
            .as_str()
            .unwrap()
            .contains(&format!("app id 1, key {}", forum.key)),
        "{findings:#?}"
    );
    assert_ne!(code, 2, "{findings:#?}");
    let config = flarum_ws(forum.root.path()).arg("config").output().unwrap();
    let config = String::from_utf8(config.stdout).unwrap();
    assert!(
        config.contains("# serving: flarum/realtime (flarum-realtime, Flarum 2)")
            && config.contains("flarum/realtime's default: always 1"),
        "{config}"
    );
    // M7: one address cannot take every slot (a tenth of the daemon's
    // max-connections, 1000 unless config.php says otherwise).
    let value_of = |setting: &str| -> usize {
        config
            .lines()
            .find(|l| l.split_whitespace().next() == Some(setting))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or_else(|| panic!("{setting} in {config}"))
    };
    let (max, per_ip) = (
        value_of("max_connections"),
        value_of("max_connections_per_ip"),
    );
    assert_eq!(per_ip, max / 10, "{config}");
    assert!(config.contains("a tenth of max-connections"), "{config}");
    common::checking::assert_finding(
        common::checking::finding(&findings, "connections"),
        "pass",
        &format!(
            "up to {max} websockets in all; below {} open (90 %) every address is admitted, however many tabs share it (a school, an office); past that, an address may hold {per_ip}",
            max * 9 / 10
        ),
        "",
    );
    let mut server = serve(&forum);

    let mut alice = Tab::open(&forum, "alice", &["private-user=1"]);
    alice.subscribe(&["private-user=1", "public"]);
    let mut guest = Tab::open(&forum, "guest", &[]);
    guest.subscribe(&["public"]);
    // Joining another user's channel is the forum's to refuse.
    guest.send(json!({"subscribe": "private-user=1"}));
    assert_eq!(guest.answer("refused")["refused"], "private-user=1");
    // A signature the forum did not make: the daemon's `pusher:error` with
    // 4009, and no subscription error.
    guest.send(json!({"subscribe": "private-user=2", "forge": true}));
    let error = guest.answer("error");
    assert_eq!(error["error"]["code"], 4009, "{error}");
    // A client event on that channel, never joined: dropped without a word
    // (the next subscription's answer comes first, and nothing before it).
    guest.send(json!({"trigger": ["private-user=2", "client-typing", {"time": 1}]}));
    assert_eq!(guest.answer("triggered")["triggered"], true);
    guest.subscribe(&["public-index-typing"]);
    let said: Vec<_> = guest.pending.drain(..).collect();
    assert!(
        said.iter()
            .all(|line| line.get("error").is_none() && line.get("refused").is_none()),
        "{said:?}"
    );

    // Who is online, as the forum asks.
    let online = forum_side(&forum, &["online"]);
    assert_eq!(online["status"], 200, "{online}");
    assert_eq!(
        online["body"]["channels"],
        json!({"private-user=1": {}}),
        "{online}"
    );
    // A notification to Alice through the SDK, an asset revision to everyone
    // as pusher-php-server sends it (one `channel`), 200 KB of payload.
    let sent = forum_side(
        &forum,
        &["trigger", "private-user=1", "notification", r#"{"id":"9"}"#],
    );
    assert_eq!(sent["status"], 200, "{sent}");
    let got = alice.next();
    assert_eq!(got["event"], "notification", "{got}");
    assert_eq!(got["data"], json!({"id": "9"}));
    let revision = json!({"revision": "x".repeat(200 * 1024)});
    assert_eq!(
        php_trigger(&forum, "public", "assetsRevision", &revision).await,
        200
    );
    for tab in [&mut alice, &mut guest] {
        let got = tab.next();
        assert_eq!(got["event"], "assetsRevision", "{}", tab.name);
        assert_eq!(got["data"]["revision"].as_str().unwrap().len(), 200 * 1024);
    }

    // Pages of other sites, and clients that send no Origin, are refused.
    for origin in [Some("https://elsewhere.example"), None] {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let url = format!(
            "ws://127.0.0.1:{}/app/{}?protocol=7&client=js&version=7.6.0",
            forum.port, forum.key
        );
        let mut request = url.into_client_request().unwrap();
        if let Some(origin) = origin {
            request
                .headers_mut()
                .insert("Origin", origin.parse().unwrap());
        }
        let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
        let refused = common::next_json(&mut ws).await.unwrap();
        assert_eq!(refused["event"], "pusher:error", "{origin:?}: {refused}");
        assert_eq!(
            common::data_of(&refused)["code"],
            4009,
            "{origin:?}: {refused}"
        );
    }
    drop(alice);
    drop(guest);
    let log = server.stop_cleanly();
    assert!(
        log.iter().any(|l| l.contains("Serving a Flarum 2 forum")),
        "{log:#?}"
    );
}

#[tokio::test]
#[ignore = "needs php-cli and the npm packages of tests/conformance"]
async fn a_sqlite_flarum2_forum_without_a_websocket_array_is_served_on_6001() {
    assert!(
        std::net::TcpListener::bind("0.0.0.0:6001").is_ok(),
        "port 6001 (flarum/realtime's default) must be free for this test"
    );
    served_as_the_daemon(Server::Sqlite, None).await;
}

/// Issue 36, the last wire differences from flarum/realtime's daemon, met
/// with pusher-js 7 as the forum's JS configures it: a frame that is not
/// JSON and an unknown `pusher:` event get no answer (flarum-ws used to
/// answer `pusher:error` with code null); a second subscribe to a joined
/// channel is answered again (a client waiting for it hung); presence
/// member ids arrive as strings, as the daemon sends them.
#[tokio::test]
#[ignore = "needs php-cli and the npm packages of tests/conformance"]
async fn the_daemons_answers_on_the_wire() {
    let forum = forum2(Server::Sqlite, Some(json!({})), "username").await;
    let _server = serve(&forum);
    let mut alice = Tab::open(&forum, "alice", &["presence-online"]);
    alice.subscribe(&["public"]);
    alice.send(json!({"raw": "this is not json"}));
    alice.send(json!({"raw": r#"{"event":"pusher:whatever","data":{}}"#}));
    alice.send(json!({"raw": r#"{"event":"pusher:subscribe","data":{"channel":"public"}}"#}));
    // The next line is the second answer: nothing came before it.
    assert_eq!(alice.next(), json!({"subscribed": "public"}));
    alice.subscribe(&["presence-online"]);
    assert_eq!(alice.answer("members")["members"], json!(["1"]));
    let mut bob = Tab::open_as(&forum, "bob", &["presence-online"], 2);
    bob.subscribe(&["presence-online"]);
    assert_eq!(alice.answer("member_added")["member_added"], json!("2"));
}

/// Issue 34: Flarum 2's database queue. A realtime job that has waited in
/// `queue_jobs` for more than three minutes means no worker runs, and the
/// forum's queued events never reach flarum-ws: `check` fails with the
/// scheduler and worker to run. Taken by a worker, it passes.
#[tokio::test]
#[ignore = "needs php-cli"]
async fn check_finds_realtime_jobs_no_worker_takes() {
    let forum = forum2(Server::Sqlite, Some(json!({})), "username").await;
    let config = forum.root.path().join("config.php");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replacen(
            "'url' =>",
            "'queue' => array ('driver' => 'database'),\n  'url' =>",
            1,
        ),
    )
    .unwrap();
    let (_, findings) = forum.check(&[]);
    common::checking::assert_finding(
        common::checking::finding(&findings, "queue"),
        "warn",
        "no queue_jobs table",
        "php flarum migrate",
    );
    let mut conn =
        common::databases::admin(Server::Sqlite, &forum.db_name, forum.root.path()).await;
    exec(&mut conn, "CREATE TABLE queue_jobs (id integer PRIMARY KEY AUTOINCREMENT, queue varchar(255) NOT NULL, payload text NOT NULL, attempts integer NOT NULL, reserved_at integer NULL, available_at integer NOT NULL, created_at integer NOT NULL)".into()).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let waited = now - 300;
    exec(&mut conn, format!(r#"INSERT INTO queue_jobs (queue, payload, attempts, available_at, created_at) VALUES ('default', '{{"displayName":"Flarum\\Realtime\\Job\\SendRealtimeEvent"}}', 0, {waited}, {waited})"#)).await;
    let (code, findings) = forum.check(&[]);
    assert_eq!(code, 1, "{findings:#?}");
    let queue = common::checking::finding(&findings, "queue");
    common::checking::assert_finding(
        queue,
        "fail",
        "1 realtime job(s) have waited in queue_jobs for more than three minutes",
        "php flarum schedule:run",
    );
    common::checking::assert_in_troubleshooting(queue);
    exec(&mut conn, "DELETE FROM queue_jobs".into()).await;
    let (_, findings) = forum.check(&[]);
    common::checking::assert_finding(
        common::checking::finding(&findings, "queue"),
        "pass",
        "no job has waited in queue_jobs for more than three minutes",
        "",
    );
}

#[tokio::test]
#[ignore = "needs MariaDB from tests/services/start.sh, php-cli and the npm packages of tests/conformance"]
async fn a_mariadb_flarum2_forum_with_a_websocket_array_is_served() {
    served_as_the_daemon(
        Server::MariaDb,
        Some(json!({"js-client-host": "forum.example", "max-connections": 500})),
    )
    .await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL from tests/services/start.sh, php-cli and the npm packages of tests/conformance"]
async fn a_postgresql_flarum2_forum_with_its_own_key_and_secret_is_served() {
    served_as_the_daemon(
        Server::Postgres,
        Some(json!({"app-key": "ownkey", "app-secret": "ownsecret"})),
    )
    .await;
}

/// Typing as the daemon relays it: the typist named from the users table
/// (the nickname with the nickname driver), never from the payload; a
/// hidden typist named only on the identified channel; unproven typists
/// anonymous in discussions and unheard in conversations.
async fn typing_is_relayed_as_the_daemon_does(db: Server) {
    let forum = forum2(db, Some(json!({})), "nickname").await;
    let _server = serve(&forum);
    let mut alice = Tab::open(
        &forum,
        "alice",
        &[
            "private-user=1",
            "private-typing=5",
            "private-privateMessageTyping=9",
        ],
    );
    alice.subscribe(&[
        "private-user=1",
        "private-typing=5",
        "private-privateMessageTyping=9",
    ]);
    let mut bob = Tab::open(
        &forum,
        "bob",
        &[
            "private-user=2",
            "private-typing=5",
            "private-privateMessageTyping=9",
        ],
    );
    bob.subscribe(&[
        "private-user=2",
        "private-typing=5",
        "private-privateMessageTyping=9",
    ]);
    // Carol holds user.viewLastSeenAt: the forum lets her join the
    // identified channels.
    let mut carol = Tab::open(
        &forum,
        "carol",
        &[
            "private-user=3",
            "private-typing=5",
            "private-typingIdentified=5",
            "private-privateMessageTypingIdentified=9",
        ],
    );
    carol.subscribe(&[
        "private-user=3",
        "private-typing=5",
        "private-typingIdentified=5",
        "private-privateMessageTypingIdentified=9",
    ]);
    let mut dave = Tab::open(&forum, "dave", &["private-user=4", "private-typing=5"]);
    dave.subscribe(&["private-user=4", "private-typing=5"]);
    let mut guest = Tab::open(
        &forum,
        "guest",
        &["private-typing=5", "private-privateMessageTyping=9"],
    );
    guest.subscribe(&[
        "public",
        "private-typing=5",
        "private-privateMessageTyping=9",
    ]);

    // After each round the forum sends `mark` to every tab (the guest's on
    // `public`), so each tab's events of the round are exactly those before it.
    let mark = |forum: &Forum2| {
        for channel in [
            "private-user=1",
            "private-user=2",
            "private-user=3",
            "private-user=4",
            "public",
        ] {
            let sent = forum_side(forum, &["trigger", channel, "mark", "{}"]);
            assert_eq!(sent["status"], 200);
        }
    };
    let typing = |name: &Value, disclose: bool, time: u64| json!({"displayName": name, "discloseOnline": disclose, "time": time});

    // Alice discloses: everyone in the discussion sees her nickname, not
    // what her client claimed.
    alice.typing(
        "private-typing=5",
        json!({"time": 111, "displayName": "FORGED"}),
    );
    std::thread::sleep(Duration::from_millis(300));
    mark(&forum);
    for tab in [&mut bob, &mut carol, &mut dave] {
        let seen = tab.events_until_mark();
        assert_eq!(seen.len(), 1, "{}: {seen:#?}", tab.name);
        assert_eq!(seen[0]["channel"], "private-typing=5");
        assert_eq!(
            seen[0]["data"],
            typing(&json!("Ally"), true, 111),
            "{}",
            tab.name
        );
    }
    assert!(
        alice.events_until_mark().is_empty(),
        "the typist hears nothing back"
    );
    let seen = guest.events_until_mark();
    assert_eq!(seen.len(), 1, "guest: {seen:#?}");

    // Bob hides: Carol (identified channel) is told it is Bob, once; the
    // others see someone anonymous.
    bob.typing(
        "private-typing=5",
        json!({"time": 222, "displayName": "bob"}),
    );
    std::thread::sleep(Duration::from_millis(300));
    mark(&forum);
    let seen = carol.events_until_mark();
    assert_eq!(seen.len(), 1, "carol: {seen:#?}");
    assert_eq!(seen[0]["channel"], "private-typingIdentified=5");
    assert_eq!(seen[0]["data"], typing(&json!("bob"), false, 222));
    for tab in [&mut alice, &mut dave] {
        let seen = tab.events_until_mark();
        assert_eq!(seen.len(), 1, "{}: {seen:#?}", tab.name);
        assert_eq!(
            seen[0]["data"],
            typing(&Value::Null, false, 222),
            "{}",
            tab.name
        );
    }
    assert!(bob.events_until_mark().is_empty());
    let seen = guest.events_until_mark();
    assert_eq!(
        seen[0]["data"],
        typing(&Value::Null, false, 222),
        "guest: {seen:#?}"
    );

    // Conversations: Alice (discloses) is named by id to the members; Bob
    // (hides) only to the identified channel; a guest socket, proven to be
    // nobody, to no one.
    alice.typing("private-privateMessageTyping=9", json!({}));
    bob.typing("private-privateMessageTyping=9", json!({}));
    guest.typing("private-privateMessageTyping=9", json!({}));
    std::thread::sleep(Duration::from_millis(300));
    mark(&forum);
    let seen = bob.events_until_mark();
    assert_eq!(seen.len(), 1, "bob: {seen:#?}");
    assert_eq!(seen[0]["channel"], "private-privateMessageTyping=9");
    assert_eq!(seen[0]["data"], json!({"userId": 1}));
    let seen = alice.events_until_mark();
    assert!(
        seen.is_empty(),
        "alice must not learn that hidden Bob types: {seen:#?}"
    );
    let seen = carol.events_until_mark();
    assert_eq!(seen.len(), 1, "carol: {seen:#?}");
    assert_eq!(
        seen[0]["channel"],
        "private-privateMessageTypingIdentified=9"
    );
    assert_eq!(seen[0]["data"], json!({"userId": 2}));
    assert!(dave.events_until_mark().is_empty());
    let seen = guest.events_until_mark();
    assert_eq!(seen.len(), 1, "guest: {seen:#?}");
    assert_eq!(seen[0]["data"], json!({"userId": 1}));

    // A guest typing in the discussion is anonymous to everyone.
    guest.typing("private-typing=5", json!({"time": 333}));
    std::thread::sleep(Duration::from_millis(300));
    mark(&forum);
    for tab in [&mut alice, &mut bob, &mut carol, &mut dave] {
        let seen = tab.events_until_mark();
        assert_eq!(seen.len(), 1, "{}: {seen:#?}", tab.name);
        assert_eq!(
            seen[0]["data"],
            typing(&Value::Null, false, 333),
            "{}",
            tab.name
        );
    }
    assert!(guest.events_until_mark().is_empty());

    // I2 of the second attack pass: a `time` that is not a number (any JSON
    // the client likes, up to a message's size) is not relayed.
    alice.typing(
        "private-typing=5",
        json!({"time": {"payload": "x".repeat(1000)}}),
    );
    std::thread::sleep(Duration::from_millis(300));
    mark(&forum);
    let seen = bob.events_until_mark();
    assert_eq!(seen.len(), 1, "bob: {seen:#?}");
    assert_eq!(seen[0]["data"]["displayName"], "Ally", "{seen:#?}");
    assert_eq!(seen[0]["data"]["time"], Value::Null, "{seen:#?}");
    for tab in [&mut alice, &mut carol, &mut dave, &mut guest] {
        tab.events_until_mark();
    }

    // Only the server speaks on the identified channels: a vetted viewer's
    // own event there (any name, claimed) is refused, not relayed.
    carol.send(json!({"trigger": ["private-typingIdentified=5", "client-typing", {"displayName": "FORGED"}]}));
    assert_eq!(carol.answer("triggered")["triggered"], true);
    let refused = carol.answer("error");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("identified typing channels"),
        "{refused}"
    );
}

#[tokio::test]
#[ignore = "needs php-cli and the npm packages of tests/conformance"]
async fn typing_on_a_sqlite_flarum2_forum() {
    typing_is_relayed_as_the_daemon_does(Server::Sqlite).await;
}

#[tokio::test]
#[ignore = "needs MariaDB and PostgreSQL from tests/services/start.sh, php-cli and the npm packages of tests/conformance"]
async fn typing_on_mariadb_and_postgresql_flarum2_forums() {
    typing_is_relayed_as_the_daemon_does(Server::MariaDb).await;
    typing_is_relayed_as_the_daemon_does(Server::Postgres).await;
}

/// flarum/realtime's restart requests: the halt key in the forum's file
/// cache and a change of `extensions_enabled` reload flarum-ws in place
/// (connections kept, a new secret in force); a switch to the Kyrne
/// extension on another port stops it with exit code 75 for systemd to
/// start it again.
#[tokio::test]
#[ignore = "needs php-cli"]
async fn halt_requests_and_extension_toggles_reload_in_place() {
    let forum = forum2(
        Server::Sqlite,
        Some(json!({"app-secret": "first"})),
        "username",
    )
    .await;
    let mut server = serve(&forum);
    let mut tab = Tab::open(&forum, "reader", &[]);
    tab.subscribe(&["public"]);

    // A new secret in config.php, then `php flarum realtime:halt` as Laravel's
    // file cache stores it (the path from PHP's own sha1).
    let config = std::fs::read_to_string(forum.root.path().join("config.php")).unwrap();
    let changed = config.replace("'first'", "'second'");
    assert_ne!(changed, config);
    std::fs::write(forum.root.path().join("config.php"), changed).unwrap();
    let halt = Command::new("php")
        .args([
            "-r",
            "$h = sha1('flarum.realtime.require-halt'); $d = $argv[1].'/storage/cache/'.substr($h,0,2).'/'.substr($h,2,2); @mkdir($d, 0777, true); file_put_contents($d.'/'.$h, '9999999999'.serialize(time()));",
        ])
        .arg(forum.root.path())
        .status()
        .unwrap();
    assert!(halt.success());
    reloaded_with_the_second_secret(&mut server, &forum, &mut tab).await;
    assert_eq!(
        php_trigger(&forum, "public", "oldSecret", &json!({})).await,
        401
    );

    // An extension enabled: reloaded in place.
    set_extensions(
        &forum,
        r#"["flarum-tags","flarum-likes","flarum-realtime"]"#,
    )
    .await;
    server.wait_for_line(
        "extensions were enabled or disabled",
        Duration::from_secs(15),
    );
    server.wait_for_line("open connections were kept", Duration::from_secs(5));

    // Switched to the Kyrne extension on another port: a restart.
    let other_port = free_port();
    set_extensions(&forum, r#"["kyrne-websocket"]"#).await;
    insert_settings(
        &forum,
        &[
            ("kyrne-websocket.app_id", "7"),
            ("kyrne-websocket.app_key", "kyrnekey"),
            ("kyrne-websocket.app_secret", "kyrnesecret"),
            ("kyrne-websocket.app_port", &other_port.to_string()),
        ],
    )
    .await;
    let (code, log) = {
        server.wait_for_line(
            "Restarting to listen where the forum now says",
            Duration::from_secs(15),
        );
        server.lines_until_exit()
    };
    assert_eq!(code, 75, "{log:#?}");
}

/// After a restart request: the server reloads in place, the forum's new
/// secret ("second") works, and `tab` is still connected.
async fn reloaded_with_the_second_secret(server: &mut Running, forum: &Forum2, tab: &mut Tab) {
    // Up to two polls: the edited config.php may be noticed (and reloaded)
    // one poll before the halt request.
    server.wait_for_line(
        "flarum/realtime asked for a restart",
        Duration::from_secs(25),
    );
    server.wait_for_line("open connections were kept", Duration::from_secs(5));
    let second = Forum2 {
        secret: "second".into(),
        ..forum2_handles(forum)
    };
    assert_eq!(
        php_trigger(&second, "public", "afterHalt", &json!({})).await,
        200
    );
    assert_eq!(tab.next()["event"], "afterHalt", "the tab stayed connected");
}

/// Rotating the database password in config.php changes flarum/realtime's
/// app secret (its md5) for the forum at once; so does it for flarum-ws:
/// the first event signed with the new secret makes it look at config.php
/// and reload in place (the tab stays connected), so no event is refused;
/// the old secret is refused from then on.
#[tokio::test]
#[ignore = "needs MariaDB, php-cli and the npm packages of tests/conformance"]
async fn a_rotated_database_password_is_followed() {
    let forum = forum2(Server::MariaDb, Some(json!({})), "username").await;
    let user = format!("rot{}", rand::random_range(0..u32::MAX));
    let mut admin_conn = admin(Server::MariaDb, "mysql", forum.root.path()).await;
    for statement in [
        format!("CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY 'first-password'"),
        format!(
            "GRANT ALL PRIVILEGES ON {}.* TO '{user}'@'127.0.0.1'",
            forum.db_name
        ),
    ] {
        exec(&mut admin_conn, statement).await;
    }
    let path = forum.root.path().join("config.php");
    let config = std::fs::read_to_string(&path).unwrap();
    let with_user = |password: &str| {
        config
            .replace("'username' => 'flarum'", &format!("'username' => '{user}'"))
            .replace(
                &format!("'password' => '{}'", password_in(&config)),
                &format!("'password' => '{password}'"),
            )
    };
    std::fs::write(&path, with_user("first-password")).unwrap();
    let first = Forum2 {
        secret: php_md5("first-password"),
        ..forum2_handles(&forum)
    };
    let mut server = start(flarum_ws(forum.root.path()).arg("serve"));
    let mut tab = Tab::open(&first, "reader", &[]);
    tab.subscribe(&["public"]);
    assert_eq!(
        php_trigger(&first, "public", "before", &json!({})).await,
        200
    );
    assert_eq!(tab.next()["event"], "before");

    // The rotation: the server's password, then config.php.
    exec(
        &mut admin_conn,
        format!("ALTER USER '{user}'@'127.0.0.1' IDENTIFIED BY 'second-password'"),
    )
    .await;
    std::fs::write(&path, with_user("second-password")).unwrap();
    let second = Forum2 {
        secret: php_md5("second-password"),
        ..forum2_handles(&forum)
    };
    // Signed with the new secret at once: the failing signature makes
    // flarum-ws look at config.php now, and the event is taken.
    assert_eq!(
        php_trigger(&second, "public", "atOnce", &json!({})).await,
        200
    );
    assert_eq!(tab.next()["event"], "atOnce", "the tab stayed connected");
    server.wait_for_line("config.php changed", Duration::from_secs(5));
    server.wait_for_line("open connections were kept", Duration::from_secs(5));
    assert_eq!(
        php_trigger(&second, "public", "after", &json!({})).await,
        200
    );
    assert_eq!(tab.next()["event"], "after");
    assert_eq!(php_trigger(&first, "public", "old", &json!({})).await, 401);
    exec(&mut admin_conn, format!("DROP USER '{user}'@'127.0.0.1'")).await;
    server.stop_cleanly();
}

/// The password written in `config` (config.php as var_export writes it).
fn password_in(config: &str) -> String {
    config
        .split("'password' => '")
        .nth(1)
        .and_then(|rest| rest.split('\'').next())
        .unwrap()
        .to_owned()
}

/// The same forum's connection details with another secret.
fn forum2_handles(forum: &Forum2) -> Forum2 {
    Forum2 {
        root: tempfile::tempdir().unwrap(),
        db_name: forum.db_name.clone(),
        port: forum.port,
        key: forum.key.clone(),
        secret: forum.secret.clone(),
    }
}

async fn sqlite_of(forum: &Forum2) -> sqlx::AnyConnection {
    use sqlx::Connection;
    let config = std::fs::read_to_string(forum.root.path().join("config.php")).unwrap();
    let file = config
        .split("'database' => 'storage/")
        .nth(1)
        .unwrap()
        .split('\'')
        .next()
        .unwrap();
    sqlx::any::install_default_drivers();
    sqlx::AnyConnection::connect(&format!(
        "sqlite://{}/storage/{file}",
        forum.root.path().display()
    ))
    .await
    .unwrap()
}

async fn set_extensions(forum: &Forum2, list: &str) {
    let mut conn = sqlite_of(forum).await;
    exec(
        &mut conn,
        format!("UPDATE settings SET value = '{list}' WHERE key = 'extensions_enabled'"),
    )
    .await;
}

async fn insert_settings(forum: &Forum2, rows: &[(&str, &str)]) {
    let mut conn = sqlite_of(forum).await;
    for (key, value) in rows {
        exec(
            &mut conn,
            format!("INSERT INTO settings VALUES ('{key}', '{value}')"),
        )
        .await;
    }
}

/// `nginx-snippet` for a Flarum 2 forum prints a server block on the
/// browsers' port (js-client-port) in front of flarum-ws; real nginx takes
/// it, and `check --live` (Origin included) gets through it with TLS as a
/// browser on the https forum would.
#[tokio::test]
#[ignore = "needs nginx and php-cli"]
async fn nginx_in_front_of_a_flarum2_forum_and_check_live_through_it() {
    use common::nginx::{Nginx, nginx_conf};
    let pki = common::pki::Pki::new();
    let leaf = pki.leaf("forum", false);
    let public = free_port();
    let forum = forum2_at(
        Server::Sqlite,
        Some(json!({"js-client-port": public, "php-client-port": public})),
        "username",
        "https://localhost",
    )
    .await;
    // Plain port, not behind a proxy yet: check says browsers cannot connect.
    let _server = serve(&forum);
    let (code, findings) = forum.check(&[]);
    assert_eq!(
        code, 0,
        "listening on 127.0.0.1 behind a proxy: {findings:#?}"
    );
    assert_eq!(
        common::checking::finding(&findings, "https")["status"],
        "pass"
    );

    let output = flarum_ws(forum.root.path())
        .args(["nginx-snippet", "--ssl-certificate"])
        .arg(&leaf.full_chain)
        .arg("--ssl-certificate-key")
        .arg(&leaf.key)
        .output()
        .unwrap();
    let snippet = String::from_utf8(output.stdout).unwrap();
    assert!(
        snippet.contains(&format!("listen {public} ssl;"))
            && snippet.contains(&format!(
                "proxy_pass             http://127.0.0.1:{};",
                forum.port
            ))
            && !snippet.contains("'server-port'"),
        "{snippet}"
    );
    let conf_dir = tempfile::tempdir().unwrap();
    let conf = nginx_conf(conf_dir.path(), &snippet);
    let _nginx = Nginx::start(&conf, public);
    let via = format!("127.0.0.1:{public}");
    let (code, findings) = common::checking::check_json(
        flarum_ws(forum.root.path()).env("SSL_CERT_FILE", &pki.root_pem),
        &["--live", "--via", &via],
    );
    assert_eq!(code, 0, "{findings:#?}");
    let live = common::checking::finding(&findings, "live");
    assert!(
        live["message"]
            .as_str()
            .unwrap()
            .contains(&format!("wss://localhost:{public}/app/{}", forum.key)),
        "{live}"
    );
}

/// An admin who puts nginx in front with the settings of flarum/realtime's
/// own `.nginx.conf` (`proxy_read_timeout 60`, on the path browsers use): a
/// pusher-js 7 tab configured as Flarum 2's JS configures it, left idle for
/// 75 s, is not cut and does not reconnect, and the forum's next event
/// reaches it on the same connection.
#[tokio::test]
#[ignore = "needs nginx, php-cli and the npm packages of tests/conformance"]
async fn an_idle_tab_stays_connected_through_the_realtime_extensions_nginx_settings() {
    use common::nginx::{Nginx, nginx_conf};
    let public = free_port();
    let forum = forum2(
        Server::Sqlite,
        Some(json!({"js-client-port": public})),
        "username",
    )
    .await;
    let _server = serve(&forum);
    let conf_dir = tempfile::tempdir().unwrap();
    let conf = nginx_conf(
        conf_dir.path(),
        &format!(
            "server {{\n  listen 127.0.0.1:{public};\n  server_name forum.example;\n  location /app/ {{\n    proxy_pass             http://127.0.0.1:{};\n    proxy_set_header Host  $host;\n    proxy_read_timeout     60;\n    proxy_connect_timeout  60;\n    proxy_redirect         off;\n    proxy_http_version 1.1;\n    proxy_set_header Upgrade $http_upgrade;\n    proxy_set_header Connection 'Upgrade';\n    proxy_set_header Host $host;\n    proxy_cache_bypass $http_upgrade;\n  }}\n}}\n",
            forum.port
        ),
    );
    let _nginx = Nginx::start(&conf, public);
    let tab = common::idle::IdleTab::open(
        "7",
        public,
        &forum.key,
        "public",
        "newPost",
        Some(FORUM_URL),
    );
    tab.stays_connected(Duration::from_secs(75));
    assert_eq!(
        php_trigger(&forum, "public", "newPost", &json!({"postId": 3})).await,
        200
    );
    let after = tab.until("event");
    assert_eq!(
        after.len(),
        1,
        "the event, and nothing before it: {after:?}"
    );
    assert_eq!(after[0]["data"]["postId"], 3);
}

/// Flarum 2 behind nginx that passes only the browsers' `/app/` (the
/// daemon's own block, on the port both `js-client-port` and
/// `php-client-port` name): browsers connect, but the forum's event posts
/// to `/apps/` get nginx's 404. `check --live` takes both paths, so it
/// fails and says which; with one `location /` for both, it passes.
#[tokio::test]
#[ignore = "needs nginx and php-cli"]
async fn live_takes_the_forums_api_path_through_the_proxy() {
    use common::nginx::{Nginx, nginx_conf};
    let public = free_port();
    let url = "http://127.0.0.1";
    let forum = forum2_at(
        Server::Sqlite,
        Some(json!({"js-client-port": public, "php-client-port": public})),
        "username",
        url,
    )
    .await;
    let _server = serve(&forum);
    let block = |location: &str| {
        format!(
            "server {{\n  listen 127.0.0.1:{public};\n  location {location} {{\n    proxy_pass http://127.0.0.1:{};\n    proxy_http_version 1.1;\n    proxy_set_header Host $host;\n    proxy_set_header Upgrade $http_upgrade;\n    proxy_set_header Connection 'Upgrade';\n    proxy_read_timeout 60;\n  }}\n}}\n",
            forum.port
        )
    };
    let conf_dir = tempfile::tempdir().unwrap();
    let conf = nginx_conf(conf_dir.path(), &block("/app/"));
    let nginx = Nginx::start(&conf, public);
    let (code, findings) = forum.check(&["--live"]);
    assert_eq!(code, 1, "{findings:#?}");
    let live = common::checking::finding(&findings, "live");
    common::checking::assert_in_troubleshooting(live);
    common::checking::assert_finding(
        live,
        "fail",
        &format!(
            "the forum posts its events to http://127.0.0.1:{public}/apps/1/events, which answered 404: 404 Not Found"
        ),
        "send /apps/ to it too",
    );
    drop(nginx);

    let conf = nginx_conf(conf_dir.path(), &block("/"));
    let _nginx = Nginx::start(&conf, public);
    let (code, findings) = forum.check(&["--live"]);
    common::checking::assert_finding(
        common::checking::finding(&findings, "live"),
        "pass",
        &format!("a browser at ws://127.0.0.1:{public}/app/"),
        "",
    );
    assert_eq!(code, 0, "{findings:#?}");
}

/// Cloudflare's ports are judged where browsers connect (js-client-port,
/// the proxy's), not where flarum-ws listens behind the proxy, and only
/// where the browsers' host is Cloudflare's proxy (issue 34: the warning
/// was on every Flarum 2 forum on 6001).
#[tokio::test]
#[ignore = "needs php-cli"]
async fn cloudflare_is_judged_on_the_browsers_port() {
    let behind_443 = forum2(
        Server::Sqlite,
        Some(json!({"js-client-port": 443})),
        "username",
    )
    .await;
    let (_, findings) = behind_443.check(&[]);
    assert!(
        findings.iter().all(|f| f["check"] != "cloudflare"),
        "{findings:#?}"
    );
    let on_6001 = forum2(Server::Sqlite, Some(json!({})), "username").await;
    let (_, findings) = on_6001.check(&[]);
    common::checking::assert_finding(
        common::checking::finding(&findings, "cloudflare"),
        "pass",
        "browsers connect to port 6001; forum.example does not resolve from this machine",
        "",
    );
    // Browsers told to connect to an address of Cloudflare's proxy on 6001
    // reach no one: that fails, naming the address.
    let proxied = forum2(
        Server::Sqlite,
        Some(json!({"js-client-host": "104.16.0.1"})),
        "username",
    )
    .await;
    let (_, findings) = proxied.check(&[]);
    common::checking::assert_finding(
        common::checking::finding(&findings, "cloudflare"),
        "fail",
        "104.16.0.1 is Cloudflare's proxy (104.16.0.1, in Cloudflare's published ranges), which does not pass port 6001",
        "js-client-port in config.php's 'websocket' array",
    );
}

/// Without a proxy, an https Flarum 2 forum on flarum-ws's plain port fails
/// `check`, and the snippet says which lines config.php needs.
#[tokio::test]
#[ignore = "needs php-cli"]
async fn an_https_flarum2_forum_on_a_plain_public_port_fails_check() {
    let forum = forum2(Server::Sqlite, Some(json!({})), "username").await;
    let config = std::fs::read_to_string(forum.root.path().join("config.php")).unwrap();
    std::fs::write(
        forum.root.path().join("config.php"),
        config.replace("'server-host' => '127.0.0.1'", "'server-host' => '0.0.0.0'"),
    )
    .unwrap();
    let (code, findings) = forum.check(&[]);
    assert_eq!(code, 1);
    common::checking::assert_finding(
        common::checking::finding(&findings, "https"),
        "fail",
        "flarum/realtime's pages open wss://",
        "flarum-ws nginx-snippet prints the server block",
    );
    let output = flarum_ws(forum.root.path())
        .arg("nginx-snippet")
        .output()
        .unwrap();
    let snippet = String::from_utf8(output.stdout).unwrap();
    assert!(
        snippet.contains("listen 6001 ssl;")
            && snippet.contains("'server-port' => 6002")
            && snippet.contains("proxy_pass             http://127.0.0.1:6002;"),
        "{snippet}"
    );
}

/// Index typing and typing activity reach only those who provably see the
/// discussion: the public channel for a public discussion, the restricted
/// tag's channel for a discussion in one restricted tag, nothing for a
/// private discussion or one in two restricted tags; typing activity per
/// subscriber, naming a hidden typist only to holders of
/// `user.viewLastSeenAt`; nothing at all once an extension that may change
/// visibility is enabled.
async fn index_typing_reaches_only_who_may_see(db: Server) {
    let forum = forum2(db, Some(json!({})), "username").await;
    let mut server = serve(&forum);
    let mut alice = Tab::open(
        &forum,
        "alice",
        &[
            "private-user=1",
            "private-typing=5",
            "private-typing=6",
            "private-typing=7",
            "private-typing=8",
        ],
    );
    alice.subscribe(&[
        "private-user=1",
        "private-typing=5",
        "private-typing=7",
        "private-typing=8",
    ]);
    let mut bob = Tab::open(&forum, "bob", &["private-user=2", "private-typing=6"]);
    bob.subscribe(&["private-user=2", "private-typing=6"]);
    let mut guest = Tab::open(&forum, "guest", &[]);
    guest.subscribe(&["public", "public-index-typing"]);
    let mut carol = Tab::open(
        &forum,
        "carol",
        &[
            "private-user=3",
            "private-index-typing-tag=2",
            "private-typing-activity",
        ],
    );
    carol.subscribe(&[
        "private-user=3",
        "private-index-typing-tag=2",
        "private-typing-activity",
    ]);
    let mut dave = Tab::open(
        &forum,
        "dave",
        &["private-user=4", "private-typing-activity"],
    );
    dave.subscribe(&["private-user=4", "private-typing-activity"]);
    let mark = |forum: &Forum2| {
        std::thread::sleep(Duration::from_millis(500));
        for channel in ["private-user=3", "private-user=4", "public"] {
            assert_eq!(
                forum_side(forum, &["trigger", channel, "mark", "{}"])["status"],
                200
            );
        }
    };

    // Alice (discloses) types in the public discussion.
    alice.typing("private-typing=5", json!({"time": 1}));
    mark(&forum);
    let seen = guest.events_until_mark();
    assert_eq!(seen.len(), 1, "guest: {seen:#?}");
    assert_eq!(seen[0]["channel"], "public-index-typing");
    assert_eq!(
        seen[0]["data"],
        json!({"id": 5, "typing": true, "tags": [1]})
    );
    for tab in [&mut carol, &mut dave] {
        let seen = tab.events_until_mark();
        assert_eq!(seen.len(), 1, "{}: {seen:#?}", tab.name);
        assert_eq!(seen[0]["event"], "typing-activity");
        assert_eq!(
            seen[0]["data"],
            json!({"discussionId": 5, "tagIds": null, "time": 1, "userId": 1, "displayName": "alice"}),
            "{}",
            tab.name
        );
    }
    // Typing on within the burst is not announced again.
    alice.typing("private-typing=5", json!({"time": 2}));
    mark(&forum);
    assert!(guest.events_until_mark().is_empty());
    carol.events_until_mark();
    dave.events_until_mark();

    // Bob (hides) types in the staff room (restricted tag 2).
    bob.typing("private-typing=6", json!({"time": 3}));
    mark(&forum);
    assert!(
        guest.events_until_mark().is_empty(),
        "guests never learn of it"
    );
    let seen = carol.events_until_mark();
    assert_eq!(seen.len(), 2, "carol: {seen:#?}");
    let index = seen.iter().find(|e| e["event"] == "index-typing").unwrap();
    assert_eq!(index["channel"], "private-index-typing-tag=2");
    assert_eq!(index["data"], json!({"id": 6, "typing": true, "tags": [2]}));
    let activity = seen
        .iter()
        .find(|e| e["event"] == "typing-activity")
        .unwrap();
    assert_eq!(
        activity["data"],
        json!({"discussionId": 6, "tagIds": null, "time": 3, "userId": 2, "displayName": "bob"}),
        "carol holds user.viewLastSeenAt"
    );
    assert!(
        dave.events_until_mark().is_empty(),
        "dave cannot see the staff room"
    );

    // The private discussion and the one in two restricted tags: nothing.
    alice.typing("private-typing=7", json!({"time": 4}));
    alice.typing("private-typing=8", json!({"time": 5}));
    mark(&forum);
    for tab in [&mut guest, &mut carol, &mut dave] {
        let seen = tab.events_until_mark();
        assert!(seen.is_empty(), "{}: {seen:#?}", tab.name);
    }

    // 6 s after the last ping, the falling edges.
    let falling = loop {
        let line = guest.next();
        if line["event"] == "index-typing" {
            break line;
        }
    };
    assert_eq!(
        falling["data"],
        json!({"id": 5, "typing": false, "tags": [1]})
    );
    let line = carol.answer("event");
    assert_eq!(
        line["data"],
        json!({"id": 6, "typing": false, "tags": [2]}),
        "{line}"
    );
    let _ = server.stop_cleanly();

    // An extension that may decide who sees discussions: nothing is sent.
    // (Checked on SQLite: the rule does not depend on the database.)
    let mut conn = match db {
        Server::Sqlite => sqlite_of(&forum).await,
        Server::MariaDb | Server::Postgres => return,
    };
    exec(
        &mut conn,
        "UPDATE settings SET value = '[\"flarum-tags\",\"fof-byobu\",\"flarum-realtime\"]' WHERE key = 'extensions_enabled'".into(),
    )
    .await;
    let _server = serve(&forum);
    let mut alice = Tab::open(&forum, "alice", &["private-user=1", "private-typing=5"]);
    alice.subscribe(&["private-user=1", "private-typing=5"]);
    let mut guest = Tab::open(&forum, "guest", &[]);
    guest.subscribe(&["public", "public-index-typing"]);
    alice.typing("private-typing=5", json!({"time": 6}));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        forum_side(&forum, &["trigger", "public", "mark", "{}"])["status"],
        200
    );
    assert!(guest.events_until_mark().is_empty());
}

#[tokio::test]
#[ignore = "needs php-cli and the npm packages of tests/conformance"]
async fn index_typing_on_a_sqlite_flarum2_forum() {
    index_typing_reaches_only_who_may_see(Server::Sqlite).await;
}

#[tokio::test]
#[ignore = "needs MariaDB and PostgreSQL from tests/services/start.sh, php-cli and the npm packages of tests/conformance"]
async fn index_typing_on_mariadb_and_postgresql_flarum2_forums() {
    index_typing_reaches_only_who_may_see(Server::MariaDb).await;
    index_typing_reaches_only_who_may_see(Server::Postgres).await;
}

/// Transactions committed in PostgreSQL database `name` so far. An idle
/// backend hands its counts to the view within 10 s (PostgreSQL 15's idle
/// flush interval), so this waits that long first.
async fn transactions(stats: &mut sqlx::AnyConnection, name: &str) -> i64 {
    tokio::time::sleep(Duration::from_secs(11)).await;
    let row: (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT CAST(xact_commit AS BIGINT) FROM pg_stat_database WHERE datname = '{name}'"
    )))
    .fetch_one(stats)
    .await
    .unwrap();
    row.0
}

/// M8 and L3 of the second attack pass, on PostgreSQL (whose statistics
/// count the queries): compose-typing signals from one user over 40
/// connections (400 a second) are worked on once a second per user, so the
/// forum database sees a handful of queries instead of the ~24 000 a second
/// they caused; and a user who hides their online status is not announced
/// to guests as `u{id}` on the index channel, while one who discloses is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL from tests/services/start.sh, php-cli and the npm packages of tests/conformance"]
async fn compose_typing_is_throttled_per_user_and_hides_who_hides() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let forum = forum2(Server::Postgres, Some(json!({})), "username").await;
    let server = serve(&forum);
    let pid = server.child.id();
    let mut guest = Tab::open(&forum, "guest", &[]);
    guest.subscribe(&["public", "public-index-typing"]);

    // A tab of `user`'s own, signed as the forum signs private-user=.
    let user_socket = |user: u64| {
        let forum_key = forum.key.clone();
        let secret = forum.secret.clone();
        let port = forum.port;
        async move {
            let url =
                format!("ws://127.0.0.1:{port}/app/{forum_key}?protocol=7&client=js&version=7.6.0");
            let mut request = url.into_client_request().unwrap();
            request
                .headers_mut()
                .insert("Origin", FORUM_URL.parse().unwrap());
            let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
            let established = common::next_json(&mut ws).await.unwrap();
            let socket_id = common::data_of(&established)["socket_id"]
                .as_str()
                .unwrap()
                .to_owned();
            let channel = format!("private-user={user}");
            let signature = flarum_ws::protocol::signature::hmac_hex(
                &secret,
                &format!("{socket_id}:{channel}"),
            );
            let subscribe = json!({"event": "pusher:subscribe", "data": {"channel": channel, "auth": format!("{forum_key}:{signature}")}});
            ws.send(Message::text(subscribe.to_string())).await.unwrap();
            let answer = common::next_json(&mut ws).await.unwrap();
            assert_eq!(
                answer["event"], "pusher_internal:subscription_succeeded",
                "{answer}"
            );
            ws
        }
    };
    // The tags a signal claims; the flood varies them, as the attack did.
    let signal_with = |user: u64, tags: Value| {
        json!({"event": "client-index-typing-tags", "channel": format!("private-user={user}"), "data": {"tags": tags}}).to_string()
    };
    let signal = |user: u64| signal_with(user, json!([1]));

    // Bob hides his online status: nothing on the index channel.
    let mut bob = user_socket(2).await;
    bob.send(Message::text(signal(2))).await.unwrap();
    // Alice discloses: announced with her source.
    let mut alice = user_socket(1).await;
    alice.send(Message::text(signal(1))).await.unwrap();
    let announced = loop {
        let line = guest.next();
        if line["channel"] == "public-index-typing" {
            break line;
        }
    };
    assert_eq!(announced["data"]["source"], "u1", "{announced}");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        forum_side(&forum, &["trigger", "public", "mark", "{}"])["status"],
        200
    );
    let seen = guest.events_until_mark();
    assert!(
        seen.iter().all(|e| e["data"]["source"] != "u2"),
        "Bob hides: {seen:#?}"
    );

    // The flood: 40 of Carol's tabs, 10 signals each within a second.
    let mut tabs = Vec::new();
    for _ in 0..40 {
        tabs.push(user_socket(3).await);
    }
    let mut stats =
        common::databases::admin(Server::Postgres, &forum.db_name, forum.root.path()).await;
    let before = transactions(&mut stats, &forum.db_name).await;
    let rss_before = common::process::rss_kib(pid);
    for round in 0..10 {
        for (n, tab) in tabs.iter_mut().enumerate() {
            let tags = json!([1, 100 + round * 40 + n]);
            tab.send(Message::text(signal_with(3, tags))).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(90)).await;
    }
    let after = transactions(&mut stats, &forum.db_name).await;
    let rss_after = common::process::rss_kib(pid);
    // Our own read of the view counts too.
    let spent = after - before;
    eprintln!(
        "400 compose signals from one user in a second: {spent} transactions on the forum database; RSS {rss_before} KiB before, {rss_after} KiB after"
    );
    assert!(spent < 200, "{spent} transactions for 400 signals");
    // I3: the flood leaves no memory behind (88 MB stayed after it).
    assert!(
        rss_after < rss_before + 16 * 1024,
        "RSS {rss_before} KiB before, {rss_after} KiB after"
    );
    drop(tabs);
    drop(server);
}

/// A forum caching in Redis (fof/redis) keeps flarum/realtime's restart
/// request there: with `forum_cache_redis_url` (and fof/redis's prefix),
/// flarum-ws takes it from Redis and reloads in place.
#[tokio::test]
#[ignore = "needs redis-server, php-cli and the npm packages of tests/conformance"]
async fn a_halt_request_in_the_forums_redis_cache_reloads_in_place() {
    let redis = common::redis::RedisServer::start();
    let forum = forum2(
        Server::Sqlite,
        Some(json!({"app-secret": "first"})),
        "username",
    )
    .await;
    let url = format!("redis://127.0.0.1:{}/1", redis.port);
    let mut server = start(
        flarum_ws(forum.root.path())
            .env("FLARUM_WS_FORUM_CACHE_REDIS_URL", &url)
            .env("FLARUM_WS_FORUM_CACHE_PREFIX", "forum:")
            .arg("serve"),
    );
    let mut tab = Tab::open(&forum, "reader", &[]);
    tab.subscribe(&["public"]);
    let config = std::fs::read_to_string(forum.root.path().join("config.php")).unwrap();
    std::fs::write(
        forum.root.path().join("config.php"),
        config.replace("'first'", "'second'"),
    )
    .unwrap();
    // What `php flarum realtime:halt` leaves with fof/redis: the serialized
    // time under the prefixed key, in the cache's database.
    let set = Command::new("redis-cli")
        .args([
            "-p",
            &redis.port.to_string(),
            "-n",
            "1",
            "SET",
            "forum:flarum.realtime.require-halt",
            "i:1764750000;",
        ])
        .output()
        .expect("redis-cli");
    assert!(set.status.success());
    reloaded_with_the_second_secret(&mut server, &forum, &mut tab).await;
    let left = Command::new("redis-cli")
        .args([
            "-p",
            &redis.port.to_string(),
            "-n",
            "1",
            "EXISTS",
            "forum:flarum.realtime.require-halt",
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&left.stdout).trim(),
        "0",
        "the request was taken"
    );
}

/// Both realtime extensions enabled, or neither: `check` and `serve` name
/// them and say what to do.
#[tokio::test]
#[ignore = "needs php-cli"]
async fn both_or_neither_realtime_extension_is_an_error_naming_them() {
    let forum = forum2(Server::Sqlite, Some(json!({})), "username").await;
    for (list, says) in [
        (
            r#"["kyrne-websocket","flarum-realtime"]"#,
            "both realtime extensions are enabled",
        ),
        (r#"["flarum-tags"]"#, "no realtime extension is enabled"),
    ] {
        set_extensions(&forum, list).await;
        let (code, findings) = forum.check(&[]);
        assert_eq!(code, 1);
        common::checking::assert_finding(
            common::checking::finding(&findings, "settings"),
            "fail",
            says,
            "enable exactly one in the forum's admin panel",
        );
        let output = flarum_ws(forum.root.path()).arg("serve").output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains(says)
                && stderr.contains("kyrne-websocket")
                && stderr.contains("fix: enable exactly one"),
            "{stderr}"
        );
    }
}

/// Issue 25, false pass 4: a misspelt key in config.php's `websocket` array
/// (`server_port` for `server-port`) changes nothing, silently; `check`
/// names it with the key that was meant.
#[tokio::test]
#[ignore = "needs php-cli"]
async fn a_misspelt_websocket_key_is_named_with_the_one_meant() {
    let forum = forum2(
        Server::Sqlite,
        Some(json!({"server_port": 6002})),
        "username",
    )
    .await;
    let (_, findings) = forum.check(&[]);
    let typo = common::checking::finding_with(&findings, "config.php", "warn");
    common::checking::assert_finding(
        typo,
        "warn",
        "'websocket' => ['server_port' => …] is not a setting",
        "did you mean 'server-port'?",
    );
    common::checking::assert_in_troubleshooting(typo);
}
