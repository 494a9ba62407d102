//! The signed HTTP API over real HTTP, as the forum's PHP side calls it.

use std::time::Duration;

use crate::common::*;
use serde_json::json;

#[tokio::test]
async fn trigger_accepts_channel_and_channels_and_excludes_socket_id() {
    let server = TestServer::start().await;
    let api = server.api();
    let mut a = server.client().await;
    let mut b = server.client().await;
    a.subscribe("one").await;
    b.subscribe("one").await;
    b.subscribe("two").await;

    let (status, body) = api.trigger("one", "newPost", r#"{"postId":158}"#).await;
    assert_eq!((status, body), (200, json!({})));
    let expected = json!({"event":"newPost","channel":"one","data":"{\"postId\":158}"});
    assert_eq!(a.next().await, expected);
    assert_eq!(b.next().await, expected);

    let (status, _) = api
        .post(
            &format!("/apps/{APP_ID}/events"),
            &json!({"name":"x","channels":["one","two"],"data":"d","socket_id":a.socket_id}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(b.next().await["channel"], "one");
    assert_eq!(b.next().await["channel"], "two");
    a.expect_silence(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn trigger_info_reports_counts() {
    let server = TestServer::start().await;
    let mut a = server.client().await;
    a.subscribe_presence("presence-room", r#"{"user_id":"1"}"#)
        .await;
    a.subscribe("news").await;
    let (status, body) = server
        .api()
        .post(
            &format!("/apps/{APP_ID}/events"),
            &json!({"name":"x","channel":"presence-room","data":"d","info":"user_count,subscription_count"}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"channels":{"presence-room":{"user_count":1,"subscription_count":1}}})
    );
    let (status, _) = server
        .api()
        .post(
            &format!("/apps/{APP_ID}/events"),
            &json!({"name":"x","channel":"news","data":"d","info":"user_count"}),
        )
        .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn batch_events_deliver_in_order_and_are_limited_to_ten() {
    let server = TestServer::start().await;
    let mut a = server.subscriber("news").await;
    let batch: Vec<_> = (0..10)
        .map(|i| json!({"name":"n","channel":"news","data":i.to_string()}))
        .collect();
    let (status, body) = server
        .api()
        .post(
            &format!("/apps/{APP_ID}/batch_events"),
            &json!({"batch":batch}),
        )
        .await;
    assert_eq!((status, body), (200, json!({})));
    for i in 0..10 {
        assert_eq!(a.next().await["data"], i.to_string());
    }
    let batch: Vec<_> = (0..11)
        .map(|_| json!({"name":"n","channel":"news","data":"x"}))
        .collect();
    let (status, body) = server
        .api()
        .post(
            &format!("/apps/{APP_ID}/batch_events"),
            &json!({"batch":batch}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    a.expect_silence(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn channel_queries() {
    let server = TestServer::start().await;
    let api = server.api();
    let (_, empty) = api.get(&format!("/apps/{APP_ID}/channels"), &[]).await;
    assert_eq!(empty, json!({"channels":{}}));

    let mut a = server.client().await;
    let mut b = server.client().await;
    a.subscribe_private("private-user1").await;
    b.subscribe_private("private-user2").await;
    b.subscribe("news").await;
    a.subscribe_presence("presence-room", r#"{"user_id":"1"}"#)
        .await;
    b.subscribe_presence("presence-room", r#"{"user_id":"1"}"#)
        .await;

    let (status, users) = api
        .get(
            &format!("/apps/{APP_ID}/channels"),
            &[("filter_by_prefix", "private-user")],
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        users,
        json!({"channels":{"private-user1":{},"private-user2":{}}})
    );

    let (_, presence) = api
        .get(
            &format!("/apps/{APP_ID}/channels"),
            &[("filter_by_prefix", "presence-"), ("info", "user_count")],
        )
        .await;
    assert_eq!(
        presence,
        json!({"channels":{"presence-room":{"user_count":1}}})
    );
    let (status, _) = api
        .get(
            &format!("/apps/{APP_ID}/channels"),
            &[("info", "user_count")],
        )
        .await;
    assert_eq!(status, 400);

    let (_, info) = api
        .get(
            &format!("/apps/{APP_ID}/channels/presence-room"),
            &[("info", "user_count,subscription_count")],
        )
        .await;
    assert_eq!(
        info,
        json!({"occupied":true,"user_count":1,"subscription_count":2})
    );
    let (_, vacant) = api
        .get(&format!("/apps/{APP_ID}/channels/nobody"), &[])
        .await;
    assert_eq!(vacant, json!({"occupied":false}));
    let (status, _) = api
        .get(&format!("/apps/{APP_ID}/channels/news/users"), &[])
        .await;
    assert_eq!(status, 400);

    api.trigger("cache-x", "e", "d").await;
    let (_, cached) = api
        .get(
            &format!("/apps/{APP_ID}/channels/cache-x"),
            &[("info", "cache")],
        )
        .await;
    assert_eq!(cached["cache"]["event"], "e");
    assert_eq!(cached["cache"]["data"], "d");
}

#[tokio::test]
async fn signature_timestamp_and_body_checks() {
    let server = TestServer::start().await;
    let api = server.api();
    let path = format!("/apps/{APP_ID}/events");
    let body = json!({"name":"x","channel":"news","data":"d"}).to_string();

    // Tampered body.
    let query = signed_query("POST", &path, &[], &body, unix_now());
    let (status, error) = api
        .raw(
            "POST",
            &format!("{path}?{query}"),
            &body.replace("news", "nope"),
        )
        .await;
    assert_eq!(status, 401);
    assert!(
        error["error"].as_str().unwrap().contains("body_md5"),
        "{error}"
    );

    // Stale timestamp.
    let query = signed_query("POST", &path, &[], &body, unix_now() - 601);
    let (status, error) = api.raw("POST", &format!("{path}?{query}"), &body).await;
    assert_eq!(status, 401);
    assert!(
        error["error"].as_str().unwrap().contains("auth_timestamp"),
        "{error}"
    );

    // Wrong signature.
    let query = signed_query("POST", &path, &[], &body, unix_now())
        .replace("auth_signature=", "auth_signature=0");
    let (status, _) = api.raw("POST", &format!("{path}?{query}"), &body).await;
    assert_eq!(status, 401);

    // Missing body_md5 with a body.
    let ts = unix_now().to_string();
    let params = [
        ("auth_key", KEY),
        ("auth_timestamp", ts.as_str()),
        ("auth_version", "1.0"),
    ];
    let owned: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let sig = flarum_ws::protocol::signature::hmac_hex(
        SECRET,
        &flarum_ws::protocol::signature::request_string_to_sign("POST", &path, &owned),
    );
    let query = format!("auth_key={KEY}&auth_timestamp={ts}&auth_version=1.0&auth_signature={sig}");
    let (status, error) = api.raw("POST", &format!("{path}?{query}"), &body).await;
    assert_eq!(status, 401);
    assert!(
        error["error"].as_str().unwrap().contains("body_md5"),
        "{error}"
    );

    // Unknown key, and a key of another app.
    let query = signed_query("POST", &path, &[], &body, unix_now()).replace(KEY, "other");
    let (status, _) = api.raw("POST", &format!("{path}?{query}"), &body).await;
    assert_eq!(status, 401);

    // Unknown app id.
    let (status, _) = api
        .post(
            "/apps/999/events",
            &json!({"name":"x","channel":"a","data":"d"}),
        )
        .await;
    assert_eq!(status, 404);

    // GET with the md5 of the empty body, as the Python SDK sends.
    let chan_path = format!("/apps/{APP_ID}/channels");
    let empty_md5 = flarum_ws::protocol::signature::body_md5(b"");
    let query = signed_query(
        "GET",
        &chan_path,
        &[("body_md5", &empty_md5)],
        "",
        unix_now(),
    );
    let (status, _) = api.raw("GET", &format!("{chan_path}?{query}"), "").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn limits_and_bad_bodies_get_clear_errors() {
    let server = TestServer::start().await;
    let api = server.api();
    let path = format!("/apps/{APP_ID}/events");
    let cases = [
        (
            json!({"name":"x","channel":"a","data":"d".repeat(10 * 1024 + 1)}),
            413,
        ),
        (
            json!({"name":"x","channels":(0..101).map(|i| format!("c{i}")).collect::<Vec<_>>(),"data":"d"}),
            400,
        ),
        (
            json!({"name":"x".repeat(201),"channel":"a","data":"d"}),
            400,
        ),
        (json!({"name":"x","channel":"bad name","data":"d"}), 400),
        (json!({"name":"x","data":"d"}), 400),
        (json!({"channel":"a","data":"d"}), 400),
        (json!({"name":"x","channel":"a"}), 400),
        (
            json!({"name":"x","channel":"a","data":"d","socket_id":"nope"}),
            400,
        ),
        (json!({"name":"x","channel":7,"data":"d"}), 400),
        (json!([1, 2]), 400),
    ];
    for (body, status) in cases {
        let (got, error) = api.post(&path, &body).await;
        assert_eq!(got, status, "{body}: {error}");
        assert!(error["error"].is_string(), "{error}");
    }
    // Not JSON at all.
    let text = "this is not json";
    let query = signed_query("POST", &path, &[], text, unix_now());
    let (status, error) = api.raw("POST", &format!("{path}?{query}"), text).await;
    assert_eq!(status, 400);
    assert!(error["error"].as_str().unwrap().contains("JSON"));
    // Oversized body is refused before reading it all.
    let huge = "x".repeat(300 * 1024);
    let query = signed_query("POST", &path, &[], &huge, unix_now());
    let (status, _) = api.raw("POST", &format!("{path}?{query}"), &huge).await;
    assert_eq!(status, 413);
    // Unknown endpoint.
    let (status, _) = api.get(&format!("/apps/{APP_ID}/nothing"), &[]).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn terminate_connections_in_both_path_forms() {
    let server = TestServer::start().await;
    let mut one = server.client().await;
    one.signin(r#"{"id":"5"}"#).await;
    let mut other = server.client().await;
    other.signin(r#"{"id":"6"}"#).await;
    let (status, _) = server
        .api()
        .post("/users/5/terminate_connections", &json!({}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(one.expect_close().await, 4009);
    other.send(json!({"event":"pusher:ping","data":{}})).await;
    assert_eq!(other.next().await["event"], "pusher:pong");
}
