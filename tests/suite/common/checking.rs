//! Running `flarum-ws check --json` and reading its findings, a SQLite
//! forum root as the installer leaves it, and docs/troubleshooting.md's
//! table, which must agree with what `check` says (each test that builds a
//! broken setup asserts that the table has a row for the finding).

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use super::SECRET;

/// Runs `command` as `check --json ARGS`; the exit code and the findings.
pub fn check_json(command: &mut Command, args: &[&str]) -> (i32, Vec<Value>) {
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

/// The finding named `name`.
pub fn finding<'a>(findings: &'a [Value], name: &str) -> &'a Value {
    findings
        .iter()
        .find(|f| f["check"] == name)
        .unwrap_or_else(|| panic!("no {name} finding in {findings:#?}"))
}

/// The finding named `name` whose status is `status` (a check may report
/// more than one).
pub fn finding_with<'a>(findings: &'a [Value], name: &str, status: &str) -> &'a Value {
    findings
        .iter()
        .find(|f| f["check"] == name && f["status"] == status)
        .unwrap_or_else(|| panic!("no {name} finding with status {status} in {findings:#?}"))
}

/// Asserts `finding` has `status`, its message contains `message` and its
/// fix contains `fix`.
pub fn assert_finding(finding: &Value, status: &str, message: &str, fix: &str) {
    assert_eq!(finding["status"], status, "{finding:#}");
    let text = finding["message"].as_str().unwrap_or_default();
    assert!(
        text.contains(message),
        "message lacks {message:?}: {finding:#}"
    );
    let fix_text = finding["fix"].as_str().unwrap_or_default();
    assert!(fix_text.contains(fix), "fix lacks {fix:?}: {finding:#}");
}

/// A forum root on SQLite, as Flarum's installer leaves it, with `url` and
/// the extension's `settings` rows.
pub async fn sqlite_forum(root: &Path, url: &str, settings: &[(&str, &str)]) {
    sqlite_forum_with_prefix(root, url, "", "", settings).await;
}

/// The same with `prefix` in config.php and `table_prefix` on the tables.
pub async fn sqlite_forum_with_prefix(
    root: &Path,
    url: &str,
    prefix: &str,
    table_prefix: &str,
    settings: &[(&str, &str)],
) {
    use sqlx::Connection;
    std::fs::create_dir_all(root.join("storage")).unwrap();
    std::fs::write(
        root.join("config.php"),
        format!(
            "<?php return array (\n  'debug' => false,\n  'database' => \n  array (\n    'driver' => 'sqlite',\n    'database' => 'storage/flarum.sqlite',\n    'prefix' => '{prefix}',\n  ),\n  'url' => '{url}',\n);"
        ),
    )
    .unwrap();
    sqlx::any::install_default_drivers();
    let path = root.join("storage/flarum.sqlite");
    let _ = std::fs::remove_file(&path);
    let mut db = sqlx::AnyConnection::connect(&format!("sqlite://{}?mode=rwc", path.display()))
        .await
        .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE TABLE \"{table_prefix}settings\" (\"key\" varchar(100) NOT NULL PRIMARY KEY, \"value\" text NULL)"
    )))
    .execute(&mut db)
    .await
    .unwrap();
    for (key, value) in settings {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO \"{table_prefix}settings\" VALUES ($1, $2)"
        )))
        .bind(*key)
        .bind(*value)
        .execute(&mut db)
        .await
        .unwrap();
    }
    db.close().await.unwrap();
}

/// The extension's credentials and `port`, as settings rows.
pub fn forum_rows(port: &str) -> Vec<(&'static str, String)> {
    vec![
        ("kyrne-websocket.app_id", "77".into()),
        (
            "kyrne-websocket.app_key",
            "forumkey0123456789abcdefghijklmn".into(),
        ),
        (
            "kyrne-websocket.app_secret",
            "forumsecret0123456789abcdefghijk".into(),
        ),
        ("kyrne-websocket.app_port", port.into()),
    ]
}

/// A Flarum 1 forum on SQLite at `root` (see [`sqlite_forum`]) with the
/// extension's test credentials ([`forum_rows`]) on `port`, and `extra`
/// settings rows added or replacing those.
pub async fn kyrne_forum(root: &Path, url: &str, port: u16, extra: &[(&str, &str)]) {
    let mut rows: Vec<(&str, String)> = forum_rows(&port.to_string()).into_iter().collect();
    for (key, value) in extra {
        rows.retain(|(k, _)| k != key);
        rows.push((*key, (*value).to_owned()));
    }
    let rows: Vec<(&str, &str)> = rows.iter().map(|(k, v)| (*k, v.as_str())).collect();
    sqlite_forum(root, url, &rows).await;
}

/// The rows of docs/troubleshooting.md's table: (what you see, what
/// check says, the fix).
fn troubleshooting_rows() -> Vec<[String; 3]> {
    let page = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/troubleshooting.md"
    ))
    .expect("docs/troubleshooting.md");
    page.lines()
        .filter(|line| line.starts_with('|') && !line.starts_with("|---"))
        .skip(1)
        .filter_map(|line| {
            let cells: Vec<String> = line
                .trim_matches('|')
                .split(" | ")
                .map(|cell| cell.trim().to_owned())
                .collect();
            (cells.len() == 3).then(|| [cells[0].clone(), cells[1].clone(), cells[2].clone()])
        })
        .collect()
}

fn plain(text: &str) -> String {
    text.replace('`', "").replace("\\|", "|")
}

/// Asserts docs/troubleshooting.md's table has a row naming `finding`'s
/// check (`` `name` `` in the second column) whose fix column, split at
/// "…", appears piece by piece in the finding's fix: the table quotes what
/// `check` says.
pub fn assert_in_troubleshooting(finding: &Value) {
    let check = finding["check"].as_str().unwrap();
    let fix = plain(finding["fix"].as_str().unwrap_or_default());
    let rows = troubleshooting_rows();
    let named: Vec<&[String; 3]> = rows
        .iter()
        .filter(|row| row[1].contains(&format!("`{check}`")))
        .collect();
    let agrees = named.iter().any(|row| {
        plain(&row[2])
            .split('…')
            .map(str::trim)
            .filter(|piece| !piece.is_empty())
            .all(|piece| fix.contains(piece))
    });
    assert!(
        agrees,
        "docs/troubleshooting.md has no row for `{check}` quoting its fix:\n  {fix}\nrows naming it: {named:#?}"
    );
}
