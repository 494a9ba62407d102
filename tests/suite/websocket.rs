//! The websocket side of the protocol, driven over real sockets.

use std::time::Duration;

use crate::common::*;
use serde_json::json;

#[tokio::test]
async fn connection_established_has_a_valid_socket_id_and_timeout() {
    let server = TestServer::start().await;
    let mut ws = Client::connect_raw(&server.ws_url(&format!("/app/{KEY}?protocol=7"))).await;
    let frame = next_json(&mut ws).await.unwrap();
    assert_eq!(frame["event"], "pusher:connection_established");
    let data = data_of(&frame);
    let socket_id = data["socket_id"].as_str().unwrap();
    let (a, b) = socket_id.split_once('.').unwrap();
    assert!(
        a.chars().all(|c| c.is_ascii_digit())
            && b.chars().all(|c| c.is_ascii_digit())
            && !a.is_empty()
            && !b.is_empty()
    );
    assert_eq!(data["activity_timeout"], 30);
}

#[tokio::test]
async fn handshake_rejections_use_the_protocol_close_codes() {
    let server = TestServer::start().await;
    let cases = [
        ("/app/wrong-key?protocol=7", 4001),
        (&*format!("/app/{KEY}"), 4008),
        (&*format!("/app/{KEY}?protocol=8"), 4007),
        (&*format!("/app/{KEY}?protocol=abc"), 4006),
        ("/somewhere/else?protocol=7", 4005),
    ];
    for (path, code) in cases {
        let mut ws = Client::connect_raw(&server.ws_url(path)).await;
        let error = next_json(&mut ws).await.unwrap();
        assert_eq!(error["event"], "pusher:error", "{path}");
        assert_eq!(data_of(&error)["code"], code, "{path}");
        assert_eq!(expect_close(&mut ws).await, code, "{path}");
    }
    let (status, _) = server.api().raw("GET", "/nothing-here", "").await;
    assert_eq!(status, 404);
    let (status, body) = server.api().raw("GET", "/up", "").await;
    assert_eq!((status, body), (200, json!("OK\n")));
}

#[tokio::test]
async fn pusher_ping_and_rfc6455_ping_are_answered() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    client.send(json!({"event":"pusher:ping","data":{}})).await;
    assert_eq!(client.next().await["event"], "pusher:pong");

    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    client
        .ws
        .send(Message::Ping(b"hi".to_vec().into()))
        .await
        .unwrap();
    let pong = tokio::time::timeout(WAIT, client.ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(pong, Message::Pong(b"hi".to_vec().into()));
}

#[tokio::test]
async fn inactive_clients_are_pinged_then_closed_with_4201() {
    let server = TestServer::with(|s| {
        s.activity_timeout = Some(1);
        s.pong_timeout = Some(1);
    })
    .await;
    let mut client = server.client().await;
    let ping = client.next().await;
    assert_eq!(ping["event"], "pusher:ping");
    assert_eq!(client.expect_close().await, 4201);

    // A client that answers stays connected.
    let mut lively = server.client().await;
    for _ in 0..3 {
        assert_eq!(lively.next().await["event"], "pusher:ping");
        lively.send(json!({"event":"pusher:pong","data":{}})).await;
    }
}

#[tokio::test]
async fn public_private_and_encrypted_subscriptions() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let ok = client.subscribe("news").await;
    assert_eq!(ok["event"], "pusher_internal:subscription_succeeded");
    assert_eq!(ok["channel"], "news");
    assert_eq!(ok["data"], "{}");

    for channel in [
        "private-user1",
        "private-encrypted-x",
        "private-cache-x",
        "private-encrypted-cache-x",
    ] {
        let ok = client.subscribe_private(channel).await;
        assert_eq!(
            ok["event"], "pusher_internal:subscription_succeeded",
            "{channel}: {ok}"
        );
        if channel.contains("cache-") {
            assert_eq!(client.next().await["event"], "pusher:cache_miss");
        }
    }

    // Bad or missing auth: both errors, connection stays usable.
    client
        .send(json!({"event":"pusher:subscribe","data":{"channel":"private-a","auth":format!("{KEY}:deadbeef")}}))
        .await;
    let error = client.next().await;
    assert_eq!(error["event"], "pusher:subscription_error");
    assert_eq!(error["channel"], "private-a");
    assert_eq!(data_of(&error)["status"], 401);
    assert_eq!(client.next().await["event"], "pusher:error");
    client
        .send(json!({"event":"pusher:subscribe","data":{"channel":"private-b"}}))
        .await;
    assert_eq!(client.next().await["event"], "pusher:subscription_error");
    assert_eq!(client.next().await["event"], "pusher:error");
    // Signed for another socket: refused.
    let stolen = auth_for("1.1", "private-c", None);
    client
        .send(json!({"event":"pusher:subscribe","data":{"channel":"private-c","auth":stolen}}))
        .await;
    assert_eq!(client.next().await["event"], "pusher:subscription_error");
    assert_eq!(client.next().await["event"], "pusher:error");

    client.send(json!({"event":"pusher:ping","data":{}})).await;
    assert_eq!(client.next().await["event"], "pusher:pong");

    // Events still arrive on the channels that were accepted.
    server
        .api()
        .trigger("private-user1", "notification", "{\"n\":1}")
        .await;
    let event = client.next().await;
    assert_eq!(
        event,
        json!({"event":"notification","channel":"private-user1","data":"{\"n\":1}"})
    );
}

#[tokio::test]
async fn channel_names_are_validated() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    for bad in ["", "has space", "#hash", &"x".repeat(201), "ünïcode"] {
        client
            .send(json!({"event":"pusher:subscribe","data":{"channel":bad}}))
            .await;
        let error = client.next().await;
        assert_eq!(error["event"], "pusher:subscription_error", "{bad:?}");
        assert_eq!(data_of(&error)["status"], 400);
        assert_eq!(client.next().await["event"], "pusher:error");
    }
    let ok = client.subscribe("a-Z_0=@,.;").await;
    assert_eq!(ok["event"], "pusher_internal:subscription_succeeded");
}

#[tokio::test]
async fn unsubscribe_stops_delivery_without_reply() {
    let server = TestServer::start().await;
    let mut client = server.subscriber("news").await;
    client
        .send(json!({"event":"pusher:unsubscribe","data":{"channel":"news"}}))
        .await;
    client.expect_silence(Duration::from_millis(200)).await;
    server.api().trigger("news", "x", "1").await;
    client.expect_silence(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn presence_members_join_and_leave_once_per_user() {
    let server = TestServer::start().await;
    let channel = "presence-forum";
    let alice = r#"{"user_id":1,"user_info":{"name":"Alice"}}"#;
    let bob = r#"{"user_id":"2","user_info":{"name":"Bob"}}"#;

    let mut a = server.client().await;
    let ok = a.subscribe_presence(channel, alice).await;
    assert_eq!(ok["event"], "pusher_internal:subscription_succeeded");
    assert_eq!(
        data_of(&ok),
        json!({"presence":{"ids":[1],"hash":{"1":{"name":"Alice"}},"count":1}})
    );

    let mut b1 = server.client().await;
    let ok = b1.subscribe_presence(channel, bob).await;
    assert_eq!(data_of(&ok)["presence"]["count"], 2);
    let added = a.next().await;
    assert_eq!(added["event"], "pusher_internal:member_added");
    assert_eq!(
        data_of(&added),
        json!({"user_id":"2","user_info":{"name":"Bob"}})
    );

    // Bob's second tab: no member_added for anyone, and Bob is still one member.
    let mut b2 = server.client().await;
    let ok = b2.subscribe_presence(channel, bob).await;
    assert_eq!(data_of(&ok)["presence"]["count"], 2);
    a.expect_silence(Duration::from_millis(200)).await;
    b1.expect_silence(Duration::from_millis(50)).await;

    let (_, users) = server
        .api()
        .get(&format!("/apps/{APP_ID}/channels/{channel}/users"), &[])
        .await;
    let mut ids: Vec<String> = users["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    assert_eq!(ids, vec!["1", "2"]);

    // Closing one of Bob's tabs: nothing; closing the last: member_removed.
    drop(b1);
    a.expect_silence(Duration::from_millis(300)).await;
    b2.send(json!({"event":"pusher:unsubscribe","data":{"channel":channel}}))
        .await;
    let removed = a.next().await;
    assert_eq!(removed["event"], "pusher_internal:member_removed");
    assert_eq!(data_of(&removed), json!({"user_id":"2"}));
}

#[tokio::test]
async fn presence_limits_and_bad_channel_data() {
    let server = TestServer::with(|s| {
        s.max_presence_members = Some(1);
        s.max_presence_user_info_bytes = Some(50);
        s.max_presence_user_id_length = Some(5);
    })
    .await;
    let mut a = server.client().await;
    a.subscribe_presence("presence-x", r#"{"user_id":"1"}"#)
        .await;
    let mut b = server.client().await;
    let refused = b
        .subscribe_presence("presence-x", r#"{"user_id":"2"}"#)
        .await;
    assert_eq!(refused["event"], "pusher:subscription_error");
    assert!(
        data_of(&refused)["error"]
            .as_str()
            .unwrap()
            .contains("1 members")
    );
    b.next().await;
    for (data, needle) in [
        (
            format!(r#"{{"user_id":"3","user_info":"{}"}}"#, "x".repeat(60)),
            "user_info",
        ),
        (r#"{"user_id":"123456"}"#.to_owned(), "user_id"),
        ("not json".to_owned(), "channel_data"),
    ] {
        let refused = b.subscribe_presence("presence-y", &data).await;
        assert_eq!(refused["event"], "pusher:subscription_error", "{data}");
        assert!(
            data_of(&refused)["error"]
                .as_str()
                .unwrap()
                .contains(needle),
            "{refused}"
        );
        b.next().await;
    }
}

#[tokio::test]
async fn client_events_follow_the_rules() {
    let server = TestServer::start().await;
    let presence_data = r#"{"user_id":"7"}"#;
    let mut a = server.client().await;
    let mut b = server.client().await;
    for c in [&mut a, &mut b] {
        c.subscribe_private("private-chat").await;
        c.subscribe("public-chat").await;
        c.subscribe_private("private-encrypted-chat").await;
    }
    a.subscribe_presence("presence-room", presence_data).await;
    b.subscribe_presence("presence-room", r#"{"user_id":"8"}"#)
        .await;
    a.next().await; // member_added for 8

    a.send(json!({"event":"client-typing","channel":"private-chat","data":{"who":"a"}}))
        .await;
    assert_eq!(
        b.next().await,
        json!({"event":"client-typing","channel":"private-chat","data":{"who":"a"}})
    );
    a.expect_silence(Duration::from_millis(200)).await; // not echoed

    a.send(json!({"event":"client-typing","channel":"presence-room","data":{}}))
        .await;
    let relayed = b.next().await;
    assert_eq!(relayed["user_id"], "7");

    for channel in [
        "public-chat",
        "private-encrypted-chat",
        "private-not-joined",
    ] {
        a.send(json!({"event":"client-x","channel":channel,"data":{}}))
            .await;
        assert_eq!(a.next().await["event"], "pusher:error", "{channel}");
    }
    b.expect_silence(Duration::from_millis(200)).await;
}

/// Two clients subscribed to `private-chat`, for client events between them.
async fn two_clients_on_private_chat(server: &TestServer) -> (Client, Client) {
    let mut a = server.client().await;
    let mut b = server.client().await;
    a.subscribe_private("private-chat").await;
    b.subscribe_private("private-chat").await;
    (a, b)
}

#[tokio::test]
async fn a_client_event_much_larger_than_the_read_buffer_arrives_whole() {
    // The server reads at most 1 KiB at a time; an 8 KiB event (under
    // Pusher's 10 KB limit) and the small one after it must come through
    // intact and in order.
    let server = TestServer::start().await;
    let (mut a, mut b) = two_clients_on_private_chat(&server).await;
    let big = "é".repeat(4 * 1024) + "end";
    a.send(json!({"event":"client-big","channel":"private-chat","data":{"text":big}}))
        .await;
    a.send(json!({"event":"client-small","channel":"private-chat","data":{}}))
        .await;
    assert_eq!(
        b.next().await,
        json!({"event":"client-big","channel":"private-chat","data":{"text":big}})
    );
    assert_eq!(b.next().await["event"], "client-small");
}

#[tokio::test]
async fn client_events_are_rate_limited_with_4301() {
    let server = TestServer::start().await;
    let (mut a, mut b) = two_clients_on_private_chat(&server).await;
    for i in 0..11 {
        a.send(json!({"event":"client-n","channel":"private-chat","data":{"i":i}}))
            .await;
    }
    let error = a.next().await;
    assert_eq!(error["event"], "pusher:error");
    assert_eq!(data_of(&error)["code"], 4301);
    let mut received = 0;
    while tokio::time::timeout(Duration::from_millis(300), b.next())
        .await
        .is_ok()
    {
        received += 1;
    }
    assert_eq!(received, 10);
    // Still connected.
    a.send(json!({"event":"pusher:ping","data":{}})).await;
    assert_eq!(a.next().await["event"], "pusher:pong");
}

#[tokio::test]
async fn client_events_are_refused_when_disabled() {
    let server = TestServer::with(|s| s.client_events = Some(false)).await;
    let mut a = server.client().await;
    a.subscribe_private("private-chat").await;
    a.send(json!({"event":"client-x","channel":"private-chat","data":{}}))
        .await;
    let error = a.next().await;
    assert!(
        data_of(&error)["message"]
            .as_str()
            .unwrap()
            .contains("disabled")
    );
}

#[tokio::test]
async fn cache_channels_replay_the_last_event_or_report_a_miss() {
    let server = TestServer::start().await;
    for channel in [
        "cache-news",
        "private-cache-news",
        "presence-cache-news",
        "private-encrypted-cache-news",
    ] {
        let mut first = server.client().await;
        let ok = if channel.starts_with("presence") {
            first
                .subscribe_presence(channel, r#"{"user_id":"1"}"#)
                .await
        } else if channel.starts_with("private") {
            first.subscribe_private(channel).await
        } else {
            first.subscribe(channel).await
        };
        assert_eq!(
            ok["event"], "pusher_internal:subscription_succeeded",
            "{channel}"
        );
        assert_eq!(
            first.next().await,
            json!({"event":"pusher:cache_miss","channel":channel})
        );

        server.api().trigger(channel, "headline", "first").await;
        server.api().trigger(channel, "headline", "second").await;
        first.next().await;
        first.next().await;

        let mut late = server.client().await;
        if channel.starts_with("presence") {
            late.subscribe_presence(channel, r#"{"user_id":"2"}"#).await
        } else if channel.starts_with("private") {
            late.subscribe_private(channel).await
        } else {
            late.subscribe(channel).await
        };
        assert_eq!(
            late.next().await,
            json!({"event":"headline","channel":channel,"data":"second"})
        );
    }
}

#[tokio::test]
async fn signin_server_to_user_watchlist_and_terminate() {
    let server = TestServer::start().await;
    let mut watcher = server.client().await;
    let success = watcher.signin(r#"{"id":"1","watchlist":["2","3"]}"#).await;
    assert_eq!(success["event"], "pusher:signin_success");
    assert_eq!(
        data_of(&success)["user_data"],
        r#"{"id":"1","watchlist":["2","3"]}"#
    );
    let initial = watcher.next().await;
    assert_eq!(initial["event"], "pusher_internal:watchlist_events");
    assert_eq!(
        data_of(&initial),
        json!({"events":[{"name":"offline","user_ids":["2","3"]}]})
    );

    let mut two = server.client().await;
    two.signin(r#"{"id":"2"}"#).await;
    let online = watcher.next().await;
    assert_eq!(
        data_of(&online),
        json!({"events":[{"name":"online","user_ids":["2"]}]})
    );

    // Only the socket signed in as 2 may join #server-to-user-2.
    let ok = two.subscribe("#server-to-user-2").await;
    assert_eq!(ok["event"], "pusher_internal:subscription_succeeded");
    let refused = watcher.subscribe("#server-to-user-2").await;
    assert_eq!(refused["event"], "pusher:subscription_error");
    watcher.next().await;
    let mut anonymous = server.client().await;
    assert_eq!(
        anonymous.subscribe("#server-to-user-2").await["event"],
        "pusher:subscription_error"
    );

    server
        .api()
        .trigger("#server-to-user-2", "private-message", "hi")
        .await;
    assert_eq!(
        two.next().await,
        json!({"event":"private-message","channel":"#server-to-user-2","data":"hi"})
    );

    // Bad signature: refused, still connected.
    anonymous
        .send(json!({"event":"pusher:signin","data":{"auth":format!("{KEY}:00"),"user_data":"{\"id\":\"9\"}"}}))
        .await;
    let _ = anonymous.next().await; // the pending pusher:error of the refused subscription
    assert_eq!(anonymous.next().await["event"], "pusher:error");

    // Terminate user 2: their socket closes, the watcher hears offline.
    let (status, body) = server
        .api()
        .post(
            &format!("/apps/{APP_ID}/users/2/terminate_connections"),
            &json!({}),
        )
        .await;
    assert_eq!((status, body), (200, json!({})));
    assert_eq!(two.expect_close().await, 4009);
    let offline = watcher.next().await;
    assert_eq!(
        data_of(&offline),
        json!({"events":[{"name":"offline","user_ids":["2"]}]})
    );
}

#[tokio::test]
async fn watchlist_over_the_limit_is_refused_with_4302() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let ids: Vec<String> = (0..101).map(|i| i.to_string()).collect();
    let user_data = json!({"id":"1","watchlist":ids}).to_string();
    let error = client.signin(&user_data).await;
    assert_eq!(error["event"], "pusher:error");
    assert_eq!(data_of(&error)["code"], 4302);
    client.send(json!({"event":"pusher:ping","data":{}})).await;
    assert_eq!(client.next().await["event"], "pusher:pong");
}

#[tokio::test]
async fn shutdown_closes_every_client_with_4200() {
    let server = TestServer::start().await;
    let mut a = server.client().await;
    let mut b = server.client().await;
    a.subscribe("news").await;
    server.shutdown.cancel();
    for client in [&mut a, &mut b] {
        let error = client.next().await;
        assert_eq!(data_of(&error)["code"], 4200);
        assert_eq!(client.expect_close().await, 4200);
    }
    let finished = tokio::time::timeout(Duration::from_secs(6), server.task).await;
    assert!(
        matches!(finished, Ok(Ok(Ok(())))),
        "server did not stop in time"
    );
}
