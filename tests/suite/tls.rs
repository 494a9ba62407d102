//! TLS served by flarum-ws itself (option 2 of the setup guide), with
//! certificates made in the test: pusher-js over wss, every key format and
//! its errors, and certificate rotation under a connected client.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::common::pki::{Pki, openssl};
use crate::common::process::{BrowserTab, Running, flarum_ws, run, start, succeed};
use crate::common::*;
use flarum_ws::probe::{SignedClient, Target, connect};
use futures_util::SinkExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::either::Either;

fn tls_server(dir: &Path, cert: &Path, key: &Path, passphrase: Option<&str>) -> Command {
    let mut command = flarum_ws(dir);
    command
        .envs(CREDENTIALS)
        .envs([("FLARUM_WS_HOST", "127.0.0.1"), ("FLARUM_WS_PORT", "0")]);
    command
        .env("FLARUM_WS_TLS_CERT", cert)
        .env("FLARUM_WS_TLS_KEY", key);
    if let Some(passphrase) = passphrase {
        command.env("FLARUM_WS_TLS_PASSPHRASE", passphrase);
    }
    command
}

fn target(port: u16) -> Target {
    Target {
        address: "127.0.0.1".into(),
        port,
        tls: true,
        server_name: "localhost".into(),
        insecure: true,
    }
}

/// The leaf certificate a new TLS connection is served.
async fn served_certificate(port: u16) -> Vec<u8> {
    match connect(&target(port)).await.expect("TLS connection") {
        Either::Right(tls) => tls.get_ref().1.peer_certificates().unwrap()[0].to_vec(),
        Either::Left(_) => unreachable!("asked for TLS"),
    }
}

#[tokio::test]
#[ignore = "needs the npm packages of tests/conformance"]
async fn pusher_js_over_wss_and_the_trigger_command() {
    let pki = Pki::new();
    let leaf = pki.leaf("forum", false);
    let dir = tempfile::tempdir().unwrap();
    let server = start(&mut tls_server(
        dir.path(),
        &leaf.full_chain,
        &leaf.key,
        None,
    ));

    for version in ["8", "5"] {
        let mut tab = BrowserTab::open(
            version,
            server.port,
            KEY,
            "public",
            "newPost",
            Some(&pki.root_pem),
        );
        assert_eq!(tab.line(), "subscribed", "pusher-js {version} over wss");

        // The admin's `trigger` verifies the chain against the CA it is told to trust.
        let stdout = succeed(
            tls_server(dir.path(), &leaf.full_chain, &leaf.key, None)
                .env("FLARUM_WS_PORT", server.port.to_string())
                .env("FLARUM_WS_APP_HOST", "localhost")
                .env("SSL_CERT_FILE", &pki.root_pem)
                .args(["trigger", "public", "newPost", r#"{"postId":7}"#]),
        );
        assert!(stdout.contains("https://127.0.0.1"));
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&tab.line()).unwrap(),
            json!({"postId": 7})
        );
        assert!(tab.child.wait().unwrap().success());
    }

    // Without trusting the CA, trigger refuses the certificate...
    let (code, _, stderr) = run(tls_server(dir.path(), &leaf.full_chain, &leaf.key, None)
        .env("FLARUM_WS_PORT", server.port.to_string())
        .env("FLARUM_WS_APP_HOST", "localhost")
        .args(["trigger", "public", "x"]));
    assert_eq!(code, 1);
    assert!(
        stderr.contains("is not trusted on this machine")
            && stderr.contains("fix: ")
            && stderr.contains("SSL_CERT_FILE"),
        "{stderr}"
    );
    // ...unless the admin declared it self-signed.
    let (code, _, stderr) = run(tls_server(dir.path(), &leaf.full_chain, &leaf.key, None)
        .env("FLARUM_WS_PORT", server.port.to_string())
        .env("FLARUM_WS_SELF_SIGNED", "true")
        .args(["trigger", "public", "x"]));
    assert_eq!(code, 0, "{stderr}");
    drop(server);
}

#[tokio::test]
#[ignore = "needs the openssl CLI"]
async fn key_formats_passphrases_and_mismatches() {
    let pki = Pki::new();
    let leaf = pki.leaf("forum", false);
    let other = pki.leaf("other", false);
    let dir = tempfile::tempdir().unwrap();
    let key = leaf.key.to_str().unwrap();

    // Encrypted PKCS#8: right, wrong and missing passphrase.
    let encrypted = openssl(
        &[
            "pkcs8",
            "-topk8",
            "-v2",
            "aes-256-cbc",
            "-in",
            key,
            "-passout",
            "pass:s3cret",
            "-out",
            pki.path("enc.key").to_str().unwrap(),
        ],
        &pki.path("enc.key"),
    );
    let running: Running = start(&mut tls_server(
        dir.path(),
        &leaf.full_chain,
        &encrypted,
        Some("s3cret"),
    ));
    assert_eq!(served_certificate(running.port).await, leaf.der);
    drop(running);
    let (code, _, stderr) =
        run(tls_server(dir.path(), &leaf.full_chain, &encrypted, Some("wrong")).arg("serve"));
    assert_eq!(code, 1);
    assert!(stderr.contains("could not be decrypted"), "{stderr}");
    let (code, _, stderr) =
        run(tls_server(dir.path(), &leaf.full_chain, &encrypted, None).arg("serve"));
    assert_eq!(code, 1);
    assert!(stderr.contains("no passphrase"), "{stderr}");

    // Legacy OpenSSL encryption: refused with the command that converts it.
    let legacy = openssl(
        &[
            "ec",
            "-in",
            key,
            "-aes256",
            "-passout",
            "pass:s3cret",
            "-out",
            pki.path("legacy.key").to_str().unwrap(),
        ],
        &pki.path("legacy.key"),
    );
    let (code, _, stderr) =
        run(tls_server(dir.path(), &leaf.full_chain, &legacy, Some("s3cret")).arg("serve"));
    assert_eq!(code, 1);
    assert!(
        stderr.contains("openssl pkcs8 -topk8 -v2 aes-256-cbc -in"),
        "{stderr}"
    );

    // SEC1 (EC PRIVATE KEY) works.
    let sec1 = openssl(
        &[
            "ec",
            "-in",
            key,
            "-out",
            pki.path("sec1.key").to_str().unwrap(),
        ],
        &pki.path("sec1.key"),
    );
    assert!(
        std::fs::read_to_string(&sec1)
            .unwrap()
            .contains("BEGIN EC PRIVATE KEY")
    );
    let running = start(&mut tls_server(dir.path(), &leaf.full_chain, &sec1, None));
    assert_eq!(served_certificate(running.port).await, leaf.der);
    drop(running);

    // PKCS#1 (RSA PRIVATE KEY) works.
    let rsa1 = openssl(
        &[
            "genrsa",
            "-traditional",
            "-out",
            pki.path("rsa1.key").to_str().unwrap(),
            "2048",
        ],
        &pki.path("rsa1.key"),
    );
    let rsa8 = openssl(
        &[
            "pkcs8",
            "-topk8",
            "-nocrypt",
            "-in",
            rsa1.to_str().unwrap(),
            "-out",
            pki.path("rsa8.key").to_str().unwrap(),
        ],
        &pki.path("rsa8.key"),
    );
    assert!(
        std::fs::read_to_string(&rsa1)
            .unwrap()
            .contains("BEGIN RSA PRIVATE KEY")
    );
    let rsa_chain = pki.leaf_for_key("rsa", &std::fs::read_to_string(&rsa8).unwrap());
    let running = start(&mut tls_server(dir.path(), &rsa_chain, &rsa1, None));
    served_certificate(running.port).await;
    drop(running);

    // A key of another certificate.
    let (code, _, stderr) =
        run(tls_server(dir.path(), &leaf.full_chain, &other.key, None).arg("serve"));
    assert_eq!(code, 1);
    assert!(
        stderr.contains("does not belong to the certificate"),
        "{stderr}"
    );
}

#[tokio::test]
async fn renewed_certificates_reach_new_clients_while_old_ones_stay() {
    let pki = Pki::new();
    let first = pki.leaf("first", false);
    let second = pki.leaf("second", false);
    let dir = tempfile::tempdir().unwrap();
    let cert = pki.path("live-cert.pem");
    let key = pki.path("live-key.pem");
    std::fs::copy(&first.full_chain, &cert).unwrap();
    std::fs::copy(&first.key, &key).unwrap();
    let mut server = start(tls_server(dir.path(), &cert, &key, None).arg("serve"));
    let port = server.port;
    assert_eq!(served_certificate(port).await, first.der);

    // A browser stays connected through the renewal.
    let stream = connect(&target(port)).await.unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(
        format!("wss://localhost:{port}/app/{KEY}?protocol=7"),
        stream,
    )
    .await
    .unwrap();
    next_json_any(&mut ws).await;
    ws.send(Message::text(
        json!({"event":"pusher:subscribe","data":{"channel":"public"}}).to_string(),
    ))
    .await
    .unwrap();
    next_json_any(&mut ws).await;

    // certbot writes the new pair.
    std::thread::sleep(Duration::from_millis(1100));
    std::fs::copy(&second.full_chain, &cert).unwrap();
    std::fs::copy(&second.key, &key).unwrap();
    let mut renewed = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if served_certificate(port).await == second.der {
            renewed = true;
            break;
        }
    }
    assert!(renewed, "the renewed certificate was not served");

    // A broken pair is refused; the renewed one keeps serving.
    std::thread::sleep(Duration::from_millis(1100));
    std::fs::write(&cert, "garbage").unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(served_certificate(port).await, second.der);

    let api = SignedClient {
        target: target(port),
        app_id: APP_ID.into(),
        key: KEY.into(),
        secret: SECRET.into(),
    };
    let (status, _) = api
        .post(
            "/events",
            json!({"name":"stillHere","channel":"public","data":"1"}).to_string(),
        )
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(next_json_any(&mut ws).await["event"], "stillHere");

    server.signal("TERM");
    let (_, log) = server.lines_until_exit();
    assert!(
        log.iter()
            .any(|l| l.contains("Keeping the current certificate")),
        "{log:?}"
    );
}

async fn next_json_any<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>) -> serde_json::Value
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use futures_util::StreamExt;
    loop {
        match tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a frame in time")
        {
            Some(Ok(Message::Text(text))) => return serde_json::from_str(&text).unwrap(),
            Some(Ok(_)) => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
}
