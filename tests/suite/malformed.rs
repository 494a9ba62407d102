//! Malformed input never panics the server, is answered with the protocol's
//! error, and leaves other clients unaffected.

use std::time::Duration;

use crate::common::*;
use futures_util::SinkExt;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

/// A bystander subscribed to `news` that must keep receiving events.
async fn bystander(server: &TestServer) -> Client {
    server.subscriber("news").await
}

async fn assert_still_served(server: &TestServer, bystander: &mut Client, n: u32) {
    let (status, _) = server.api().trigger("news", "still", &n.to_string()).await;
    assert_eq!(status, 200);
    assert_eq!(bystander.next().await["data"], n.to_string());
}

#[tokio::test]
async fn bad_messages_get_pusher_error_and_the_connection_survives() {
    let server = TestServer::start().await;
    let mut watcher = bystander(&server).await;
    let mut client = server.client().await;
    let bad = [
        "not json",
        "{",
        "[]",
        "42",
        "null",
        r#"{"no_event":1}"#,
        r#"{"event":7}"#,
        r#"{"event":"pusher:subscribe"}"#,
        r#"{"event":"pusher:subscribe","data":"not an object"}"#,
        r#"{"event":"pusher:subscribe","data":{"channel":["x"]}}"#,
        r#"{"event":"pusher:subscribe","data":{"channel":"private-x","auth":5}}"#,
        r#"{"event":"pusher:signin","data":{}}"#,
        r#"{"event":"pusher:unsubscribe","data":{}}"#,
        r#"{"event":"client-x","data":{}}"#,
        r#"{"event":"something:unknown","data":{}}"#,
        "\"\\ud800\"",
    ];
    for (i, text) in bad.iter().enumerate() {
        client.send_text(text).await;
        let error = client.next().await;
        assert_eq!(error["event"], "pusher:error", "{text}");
        assert!(data_of(&error)["message"].is_string(), "{text}");
        assert_still_served(&server, &mut watcher, i as u32).await;
    }
    client
        .ws
        .send(Message::Binary(vec![0, 159, 146, 150].into()))
        .await
        .unwrap();
    assert_eq!(client.next().await["event"], "pusher:error");
    client.send(json!({"event":"pusher:ping","data":{}})).await;
    assert_eq!(client.next().await["event"], "pusher:pong");
}

#[tokio::test]
async fn huge_frames_close_only_that_connection() {
    let server = TestServer::with(|s| s.max_message_bytes = Some(16 * 1024)).await;
    let mut watcher = bystander(&server).await;
    let mut client = server.client().await;
    let huge = format!(
        r#"{{"event":"client-x","channel":"private-a","data":"{}"}}"#,
        "x".repeat(64 * 1024)
    );
    let _ = client.ws.send(Message::text(huge)).await;
    let error = client.next().await;
    assert_eq!(error["event"], "pusher:error");
    assert_eq!(client.expect_close().await, 1009);
    assert_still_served(&server, &mut watcher, 1).await;
}

#[tokio::test]
async fn garbage_bytes_and_broken_http_do_not_hurt_others() {
    let server = TestServer::start().await;
    let mut watcher = bystander(&server).await;
    let garbage: [&[u8]; 4] = [
        b"\x00\x01\x02\x03garbage\r\n\r\n",
        b"GET /app/test-key?protocol=7 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
        b"POST /apps/42/events HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Long: ",
    ];
    for (i, bytes) in garbage.iter().enumerate() {
        let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        stream.write_all(bytes).await.unwrap();
        let mut buf = vec![0u8; 1024];
        let _ = tokio::time::timeout(Duration::from_millis(500), stream.read(&mut buf)).await;
        assert_still_served(&server, &mut watcher, i as u32).await;
    }
    // A websocket that sends invalid frame bits is closed with a protocol error.
    let mut client = server.client().await;
    let raw = client.ws.get_mut();
    if let tokio_tungstenite::MaybeTlsStream::Plain(tcp) = raw {
        tcp.write_all(&[0xFF, 0x80, 0, 0, 0, 0]).await.unwrap();
    }
    assert_still_served(&server, &mut watcher, 99).await;
}

#[tokio::test]
async fn many_clients_misbehaving_at_once() {
    let server = TestServer::start().await;
    let mut watcher = bystander(&server).await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let url = server.ws_url(&format!("/app/{KEY}?protocol=7"));
        tasks.push(tokio::spawn(async move {
            let mut client = Client::connect(&url).await;
            for _ in 0..20 {
                client
                    .send_text(&format!(
                        "{{\"event\":\"pusher:subscribe\",\"data\":{{\"channel\":{i}}}}}"
                    ))
                    .await;
                client.send_text("][").await;
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_still_served(&server, &mut watcher, 1).await;
}
