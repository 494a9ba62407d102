//! Shared test harness: a real flarum-ws server on an ephemeral loopback
//! port, a raw websocket client and a signed HTTP API client.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use flarum_ws::config::{PartialSettings, Secret, Settings, Sources, resolve};
use flarum_ws::protocol::signature::hmac_hex;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

pub mod checking;
pub mod databases;
pub mod idle;
pub mod nginx;
pub mod outage;
pub mod pki;
pub mod process;
pub mod redis;

pub const APP_ID: &str = "42";
pub const KEY: &str = "test-key";
pub const SECRET: &str = "test-secret";
/// The test app's credentials as the variables a process reads.
pub const CREDENTIALS: [(&str, &str); 3] = [
    ("FLARUM_WS_APP_ID", APP_ID),
    ("FLARUM_WS_APP_KEY", KEY),
    ("FLARUM_WS_APP_SECRET", SECRET),
];

/// Settings as a forum admin would write them, with `tweak` applied.
pub fn settings(tweak: impl FnOnce(&mut PartialSettings)) -> Settings {
    let mut partial = PartialSettings {
        app_id: Some(APP_ID.into()),
        app_key: Some(KEY.into()),
        app_secret: Some(Secret::new(SECRET)),
        host: Some("127.0.0.1".into()),
        port: Some(0),
        client_events: Some(true),
        ..Default::default()
    };
    tweak(&mut partial);
    resolve(Sources {
        flags: partial,
        ..Default::default()
    })
    .expect("test settings are valid")
    .settings
}

pub struct TestServer {
    pub addr: SocketAddr,
    pub shutdown: CancellationToken,
    pub task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::with(|_| {}).await
    }

    pub async fn with(tweak: impl FnOnce(&mut PartialSettings)) -> Self {
        let settings = settings(tweak);
        let listener = flarum_ws::server::bind(&settings).await.expect("bind");
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(flarum_ws::server::run(listener, settings, shutdown.clone()));
        Self {
            addr,
            shutdown,
            task,
        }
    }

    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{}", self.addr, path)
    }

    pub async fn client(&self) -> Client {
        Client::connect(&self.ws_url(&format!("/app/{KEY}?protocol=7&client=js&version=8.4.0")))
            .await
    }

    /// A client subscribed to the public `channel`.
    pub async fn subscriber(&self, channel: &str) -> Client {
        let mut client = self.client().await;
        client.subscribe(channel).await;
        client
    }

    pub fn api(&self) -> Api {
        Api {
            base: format!("http://{}", self.addr),
            http: reqwest::Client::new(),
        }
    }
}

/// A websocket client that speaks raw frames.
pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub socket_id: String,
}

pub const WAIT: Duration = Duration::from_secs(5);

/// Held by the tests that load the machine on purpose (hundreds of
/// connections, floods), so that they do not run at once and starve each
/// other, or each other's timing, on a machine of two cores.
pub static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

impl Client {
    /// Connects without expecting `connection_established` (for rejections).
    pub async fn connect_raw(url: &str) -> WebSocketStream<MaybeTlsStream<TcpStream>> {
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("websocket handshake");
        ws
    }

    pub async fn connect(url: &str) -> Self {
        Self::established(Self::connect_raw(url).await).await
    }

    /// Connects to `port` on 127.0.0.1 from the loopback address `from`
    /// (127.0.0.0/8 is all this machine's), as a client of its own.
    pub async fn connect_from(port: u16, from: std::net::Ipv4Addr) -> Self {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind((from, 0).into()).unwrap();
        let stream = socket.connect(([127, 0, 0, 1], port).into()).await.unwrap();
        let url = format!("ws://127.0.0.1:{port}/app/{KEY}?protocol=7");
        let (ws, _) = tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(stream))
            .await
            .expect("websocket handshake");
        Self::established(ws).await
    }

    /// Reads `connection_established` and the socket id from it.
    async fn established(mut ws: WebSocketStream<MaybeTlsStream<TcpStream>>) -> Self {
        let first = next_json(&mut ws).await.expect("connection_established");
        assert_eq!(first["event"], "pusher:connection_established", "{first}");
        let data: Value =
            serde_json::from_str(first["data"].as_str().expect("data is a string")).unwrap();
        let socket_id = data["socket_id"].as_str().unwrap().to_owned();
        Self { ws, socket_id }
    }

    pub async fn send(&mut self, message: Value) {
        self.ws
            .send(Message::text(message.to_string()))
            .await
            .expect("send");
    }

    pub async fn send_text(&mut self, text: &str) {
        self.ws
            .send(Message::text(text.to_owned()))
            .await
            .expect("send");
    }

    /// The next JSON text frame, failing the test after [`WAIT`].
    pub async fn next(&mut self) -> Value {
        next_json(&mut self.ws).await.expect("a frame")
    }

    /// The next frame whose event is `event` (skipping others).
    pub async fn expect_event(&mut self, event: &str) -> Value {
        loop {
            let frame = self.next().await;
            if frame["event"] == event {
                return frame;
            }
        }
    }

    /// Asserts nothing arrives for `quiet`.
    pub async fn expect_silence(&mut self, quiet: Duration) {
        if let Ok(Some(frame)) = tokio::time::timeout(quiet, self.ws.next()).await {
            panic!("expected no frame, got {frame:?}");
        }
    }

    pub async fn subscribe(&mut self, channel: &str) -> Value {
        self.send(json!({"event":"pusher:subscribe","data":{"channel":channel}}))
            .await;
        self.next().await
    }

    pub async fn subscribe_private(&mut self, channel: &str) -> Value {
        let auth = auth_for(&self.socket_id, channel, None);
        self.send(json!({"event":"pusher:subscribe","data":{"channel":channel,"auth":auth}}))
            .await;
        self.next().await
    }

    pub async fn subscribe_presence(&mut self, channel: &str, channel_data: &str) -> Value {
        let auth = auth_for(&self.socket_id, channel, Some(channel_data));
        self.send(json!({"event":"pusher:subscribe","data":{"channel":channel,"auth":auth,"channel_data":channel_data}}))
            .await;
        self.next().await
    }

    pub async fn signin(&mut self, user_data: &str) -> Value {
        let auth = format!(
            "{KEY}:{}",
            hmac_hex(SECRET, &format!("{}::user::{user_data}", self.socket_id))
        );
        self.send(json!({"event":"pusher:signin","data":{"auth":auth,"user_data":user_data}}))
            .await;
        self.next().await
    }

    /// Waits for the close frame and returns its code.
    pub async fn expect_close(&mut self) -> u16 {
        expect_close(&mut self.ws).await
    }
}

pub async fn next_json(ws: &mut WebSocketStream<MaybeTlsStream<TcpStream>>) -> Option<Value> {
    loop {
        match tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("timed out waiting for a frame")
        {
            Some(Ok(Message::Text(text))) => {
                return Some(serde_json::from_str(&text).expect("JSON frame"));
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(other)) => panic!("unexpected frame {other:?}"),
            Some(Err(e)) => panic!("websocket error {e}"),
            None => return None,
        }
    }
}

/// Reads until the close frame and returns its code.
pub async fn expect_close(ws: &mut WebSocketStream<MaybeTlsStream<TcpStream>>) -> u16 {
    loop {
        match tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("timed out waiting for close")
        {
            Some(Ok(Message::Close(Some(frame)))) => return u16::from(frame.code),
            Some(Ok(Message::Close(None))) => return u16::from(CloseCode::Status),
            Some(Ok(_)) => continue,
            Some(Err(e)) => panic!("websocket error before close: {e}"),
            None => panic!("connection ended without a close frame"),
        }
    }
}

/// The `auth` a forum would return for this subscription.
pub fn auth_for(socket_id: &str, channel: &str, channel_data: Option<&str>) -> String {
    let signed = match channel_data {
        Some(data) => format!("{socket_id}:{channel}:{data}"),
        None => format!("{socket_id}:{channel}"),
    };
    format!("{KEY}:{}", hmac_hex(SECRET, &signed))
}

/// Parses the string `data` of an internal frame.
pub fn data_of(frame: &Value) -> Value {
    serde_json::from_str(frame["data"].as_str().expect("string data")).expect("JSON data")
}

/// Asserts that `frame` carries the error `code` with a message
/// containing `message`.
pub fn assert_error(frame: &Value, code: u16, message: &str) {
    let data = data_of(frame);
    assert_eq!(data["code"], code, "{frame}");
    let text = data["message"].as_str().unwrap_or_default();
    assert!(text.contains(message), "message lacks {message:?}: {frame}");
}

/// A signed HTTP API client, as a forum's PHP side would be.
pub struct Api {
    pub base: String,
    pub http: reqwest::Client,
}

pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The signed query string for a request.
/// A query string signed with the test app's credentials.
pub fn signed_query(
    method: &str,
    path: &str,
    extra: &[(&str, &str)],
    body: &str,
    timestamp: i64,
) -> String {
    flarum_ws::protocol::signature::signed_query(
        method,
        path,
        KEY,
        SECRET,
        body.as_bytes(),
        timestamp,
        extra,
    )
}

impl Api {
    pub async fn raw(&self, method: &str, path_and_query: &str, body: &str) -> (u16, Value) {
        let url = format!("{}{}", self.base, path_and_query);
        let request = match method {
            "GET" => self.http.get(url),
            _ => self
                .http
                .post(url)
                .header("content-type", "application/json")
                .body(body.to_owned()),
        };
        let response = request.send().await.expect("HTTP request");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, value)
    }

    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let body = body.to_string();
        let query = signed_query("POST", path, &[], &body, unix_now());
        self.raw("POST", &format!("{path}?{query}"), &body).await
    }

    pub async fn get(&self, path: &str, extra: &[(&str, &str)]) -> (u16, Value) {
        let query = signed_query("GET", path, extra, "", unix_now());
        self.raw("GET", &format!("{path}?{query}"), "").await
    }

    pub async fn trigger(&self, channel: &str, event: &str, data: &str) -> (u16, Value) {
        self.post(
            &format!("/apps/{APP_ID}/events"),
            &json!({"name": event, "channel": channel, "data": data}),
        )
        .await
    }
}
