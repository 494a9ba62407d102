//! The printed reverse-proxy configuration, checked by real nginx: `nginx -t`
//! accepts it, and nginx terminating TLS on a loopback port proxies pusher-js
//! to flarum-ws while the rest of the site is still served by `@web`.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::pki::Pki;
use common::process::{BrowserTab, flarum_ws, free_port, start};
use common::*;
use flarum_ws::probe::{Target, request};

fn with_credentials(command: &mut Command, port: u16) -> &mut Command {
    command.envs([
        ("FLARUM_WS_APP_ID", APP_ID),
        ("FLARUM_WS_APP_KEY", KEY),
        ("FLARUM_WS_APP_SECRET", SECRET),
        ("FLARUM_WS_REVERSE_PROXY", "true"),
    ]);
    command.env("FLARUM_WS_PORT", port.to_string())
}

/// An nginx.conf around `server_config` with every path in `dir`.
fn nginx_conf(dir: &Path, server_config: &str) -> std::path::PathBuf {
    let d = dir.display();
    std::fs::create_dir_all(dir.join("snippets")).unwrap();
    // Stands in for Debian's /etc/nginx/snippets/fastcgi-php.conf.
    std::fs::write(
        dir.join("snippets/fastcgi-php.conf"),
        "fastcgi_index index.php;\n",
    )
    .unwrap();
    std::fs::write(dir.join("site.conf"), server_config).unwrap();
    let conf = format!(
        "daemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{}}\nhttp {{\n  access_log off;\n  \
         client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n  \
         uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  include {d}/site.conf;\n}}\n"
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).unwrap();
    path
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
    let server = start(with_credentials(&mut flarum_ws(forum.path()), ws_port).arg("serve"));
    assert_eq!(server.port, ws_port);

    let nginx_port = free_port();
    let output = with_credentials(&mut flarum_ws(forum.path()), ws_port)
        .args(["nginx-snippet", "--full", "--server-name", "localhost"])
        .args(["--listen", &format!("127.0.0.1:{nginx_port} ssl")])
        .arg("--forum-root")
        .arg(forum.path())
        .arg("--ssl-certificate")
        .arg(&leaf.full_chain)
        .arg("--ssl-certificate-key")
        .arg(&leaf.key)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let snippet = String::from_utf8(output.stdout).unwrap();
    assert!(
        snippet.contains(&format!(
            "proxy_pass             http://127.0.0.1:{ws_port};"
        )),
        "{snippet}"
    );

    let conf_dir = tempfile::tempdir().unwrap();
    let conf = nginx_conf(conf_dir.path(), &snippet);
    let test = Command::new("nginx")
        .arg("-t")
        .arg("-c")
        .arg(&conf)
        .output()
        .expect("nginx is installed");
    assert!(
        test.status.success(),
        "nginx -t: {}",
        String::from_utf8_lossy(&test.stderr)
    );

    let mut nginx = Command::new("nginx")
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
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

    let mut tab = BrowserTab::open(
        "8",
        nginx_port,
        KEY,
        "public",
        "newPost",
        Some(&pki.root_pem),
    );
    assert_eq!(tab.line(), "subscribed", "pusher-js through nginx");
    let trigger = with_credentials(&mut flarum_ws(forum.path()), ws_port)
        .args(["trigger", "public", "newPost", r#"{"postId":3}"#])
        .output()
        .unwrap();
    assert!(
        trigger.status.success(),
        "{}",
        String::from_utf8_lossy(&trigger.stderr)
    );
    assert_eq!(tab.line(), r#"{"postId":3}"#);
    assert!(tab.child.wait().unwrap().success());

    // SIGTERM lets the master stop its workers too (SIGKILL would orphan them).
    let pid = nginx.id().to_string();
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    let _ = nginx.wait();
    drop(server);
}

#[test]
fn caddy_and_apache_formats_name_the_port() {
    let dir = tempfile::tempdir().unwrap();
    for (format, needle) in [
        ("caddy", "reverse_proxy @websocket 127.0.0.1:2999"),
        ("apache", "ws://127.0.0.1:2999/app/$1"),
    ] {
        let output = with_credentials(&mut flarum_ws(dir.path()), 2999)
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
