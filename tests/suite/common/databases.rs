//! The database servers of the forum tests (started by
//! tests/services/start.sh), an admin connection to build a forum's tables
//! with, and config.php written by real PHP as Flarum's installer does.

use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::{Value, json};
use sqlx::any::install_default_drivers;
use sqlx::{AnyConnection, AssertSqlSafe, Connection};

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Server {
    MariaDb,
    Postgres,
    Sqlite,
}

pub fn service_var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: start the test services with `source <(tests/services/start.sh)` (tests/run-all.sh does this)")
    })
}

pub fn password() -> String {
    service_var("TEST_DB_PASSWORD")
}

fn encoded_password() -> String {
    password().replace('@', "%40").replace(' ', "%20")
}

/// An admin connection used to create the forum's database and tables.
pub async fn admin(db: Server, database: &str, root: &Path) -> AnyConnection {
    install_default_drivers();
    let url = match db {
        Server::MariaDb => format!(
            "mysql://flarum:{}@127.0.0.1:{}/{database}",
            encoded_password(),
            service_var("TEST_DB_MYSQL_PORT")
        ),
        Server::Postgres => format!(
            "postgres://flarum:{}@127.0.0.1:{}/{database}",
            encoded_password(),
            service_var("TEST_DB_PG_PORT")
        ),
        Server::Sqlite => format!(
            "sqlite://{}/storage/{database}.sqlite?mode=rwc",
            root.display()
        ),
    };
    AnyConnection::connect(&url)
        .await
        .expect("admin connection")
}

/// A forum root (with its storage/ folder) and a new, empty database on
/// `db` named `<stem>_<random>`, with an admin connection to it.
pub async fn fresh_database(db: Server, stem: &str) -> (tempfile::TempDir, String, AnyConnection) {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("storage")).unwrap();
    let name = format!("{stem}_{}", rand::random_range(0..u32::MAX));
    let server_database = match db {
        Server::MariaDb => Some("mysql"),
        Server::Postgres => Some("postgres"),
        Server::Sqlite => None,
    };
    if let Some(server_database) = server_database {
        let mut conn = admin(db, server_database, root.path()).await;
        exec(&mut conn, format!("CREATE DATABASE {name}")).await;
    }
    let conn = admin(db, &name, root.path()).await;
    (root, name, conn)
}

/// config.php's `database` array for the database `name` made by
/// `fresh_database`, as Flarum's installer writes it. `mysql_driver` is the
/// driver name a MariaDB forum has (`mysql` on Flarum 1, `mariadb` on
/// Flarum 2); `prefix` is the table prefix as written (null is allowed).
pub fn config_php_database(db: Server, name: &str, mysql_driver: &str, prefix: Value) -> Value {
    match db {
        Server::MariaDb => json!({"driver": mysql_driver, "host": "127.0.0.1",
            "port": service_var("TEST_DB_MYSQL_PORT").parse::<u16>().unwrap(),
            "database": name, "username": "flarum", "password": password(), "charset": "utf8mb4",
            "collation": "utf8mb4_unicode_ci", "prefix": prefix, "strict": false, "engine": "InnoDB", "prefix_indexes": true}),
        Server::Postgres => json!({"driver": "pgsql", "host": "127.0.0.1",
            "port": service_var("TEST_DB_PG_PORT"),
            "database": name, "username": "flarum", "password": password(), "prefix": prefix,
            "search_path": "public", "sslmode": "disable"}),
        Server::Sqlite => json!({"driver": "sqlite", "database": format!("storage/{name}.sqlite"),
            "prefix": prefix, "foreign_key_constraints": true}),
    }
}

pub async fn exec(conn: &mut AnyConnection, sql: String) {
    sqlx::query(AssertSqlSafe(sql.clone()))
        .execute(&mut *conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// Writes config.php exactly as Flarum's installer does, with real PHP.
pub fn write_config_php(root: &Path, config: &Value) {
    let script = "$c = json_decode(file_get_contents('php://stdin'), true); echo '<?php return ' . var_export($c, true) . ';';";
    let mut php = Command::new("php")
        .args(["-r", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("php-cli is needed for these tests (apt-get install php-cli)");
    use std::io::Write;
    php.stdin
        .take()
        .unwrap()
        .write_all(config.to_string().as_bytes())
        .unwrap();
    let output = php.wait_with_output().unwrap();
    assert!(output.status.success());
    std::fs::write(root.join("config.php"), output.stdout).unwrap();
}
