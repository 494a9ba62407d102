//! What the load generator and the soak run share: reading a server's memory
//! and CPU from /proc, and triggering events through the signed HTTP API.
#![allow(dead_code)] // each tool uses a different part

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::json;

pub fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

/// Resident memory of `pid` in KiB.
pub fn rss_kib(pid: Option<u32>) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid?)).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// User plus system CPU time of `pid` in microseconds.
pub fn cpu_micros(pid: Option<u32>) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid?)).ok()?;
    let after_name = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // Linux reports in clock ticks of 1/100 s on every common configuration.
    Some(ticks * 10_000)
}

// Which server and app a run drives (flattened into each example's flags).
#[derive(Debug, Clone, clap::Args)]
pub struct Target {
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    #[arg(long)]
    pub port: u16,
    #[arg(long)]
    pub app_id: String,
    #[arg(long)]
    pub key: String,
    #[arg(long)]
    pub secret: String,
    /// The server's pid, for memory and CPU readings from /proc.
    #[arg(long)]
    pub pid: Option<u32>,
}

impl Target {
    /// The app, reached through `port` (another node's, or the target's).
    pub fn app(&self, port: Option<u16>) -> App {
        App {
            base: format!("http://{}:{}", self.host, port.unwrap_or(self.port)),
            id: self.app_id.clone(),
            key: self.key.clone(),
            secret: self.secret.clone(),
        }
    }
}

/// The app a run talks to.
#[derive(Debug, Clone)]
pub struct App {
    pub base: String,
    pub id: String,
    pub key: String,
    pub secret: String,
}

impl App {
    /// `key:signature` authorizing `socket_id` for a private or presence channel.
    pub fn channel_auth(
        &self,
        socket_id: &str,
        channel: &str,
        channel_data: Option<&str>,
    ) -> String {
        let payload = match channel_data {
            Some(data) => format!("{socket_id}:{channel}:{data}"),
            None => format!("{socket_id}:{channel}"),
        };
        let signature = flarum_ws::protocol::signature::hmac_hex(&self.secret, &payload);
        format!("{}:{signature}", self.key)
    }

    /// The signed `POST /apps/{id}/events` of one event: path with its
    /// signed query, and body.
    pub fn signed_event(&self, channel: &str, event: &str, data: &str) -> (String, String) {
        let path = format!("/apps/{}/events", self.id);
        let body = json!({"name": event, "channel": channel, "data": data}).to_string();
        let query = flarum_ws::protocol::signature::signed_query(
            "POST",
            &path,
            &self.key,
            &self.secret,
            body.as_bytes(),
            (now_micros() / 1_000_000) as i64,
            &[],
        );
        (format!("{path}?{query}"), body)
    }

    /// Triggers `event` on `channel` as the forum would.
    pub async fn trigger(
        &self,
        http: &reqwest::Client,
        channel: &str,
        event: &str,
        data: &str,
    ) -> Result<(), String> {
        let (path_and_query, body) = self.signed_event(channel, event, data);
        let response = http
            .post(format!("{}{path_and_query}", self.base))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(format!("HTTP {}", response.status()))
        }
    }
}

/// Keep-alive HTTPS connections to the app's signed API, for servers that
/// serve TLS on their only port (the certificate is not verified: a bench
/// measures the encryption, not the trust chain). Each request takes a
/// connection from the pool and puts it back; a connection the server
/// closed is replaced by a new one (counted in `reconnects`).
pub struct TlsPublisher {
    app: App,
    target: flarum_ws::probe::Target,
    pool: tokio::sync::Mutex<Vec<Sender>>,
    pub reconnects: std::sync::atomic::AtomicU64,
}

type Sender = hyper::client::conn::http1::SendRequest<http_body_util::Full<bytes::Bytes>>;

impl TlsPublisher {
    /// Opens `connections` TLS connections to `host:port`.
    pub async fn open(app: App, host: &str, port: u16, connections: usize) -> Result<Self, String> {
        let publisher = Self {
            app,
            target: flarum_ws::probe::Target {
                address: host.to_owned(),
                port,
                tls: true,
                server_name: "localhost".into(),
                insecure: true,
            },
            pool: tokio::sync::Mutex::new(Vec::new()),
            reconnects: std::sync::atomic::AtomicU64::new(0),
        };
        for _ in 0..connections {
            let sender = publisher.connect().await?;
            publisher.pool.lock().await.push(sender);
        }
        Ok(publisher)
    }

    async fn connect(&self) -> Result<Sender, String> {
        let stream = flarum_ws::probe::connect(&self.target)
            .await
            .map_err(|e| e.to_string())?;
        let (sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| e.to_string())?;
        tokio::spawn(connection);
        Ok(sender)
    }

    /// A pooled connection that is still open, or a new one.
    async fn sender(&self) -> Result<Sender, String> {
        while let Some(sender) = self.pool.lock().await.pop() {
            if !sender.is_closed() {
                return Ok(sender);
            }
        }
        self.reconnects
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.connect().await
    }

    /// Triggers `event` on `channel`, as [`App::trigger`] does over plain HTTP.
    pub async fn trigger(&self, channel: &str, event: &str, data: &str) -> Result<(), String> {
        let (path_and_query, body) = self.app.signed_event(channel, event, data);
        let mut sender = self.sender().await?;
        if sender.ready().await.is_err() {
            // Closed between the check and now: once more on a new one.
            self.reconnects
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            sender = self.connect().await?;
        }
        let request = hyper::Request::post(path_and_query)
            .header("host", format!("localhost:{}", self.target.port))
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(bytes::Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        http_body_util::BodyExt::collect(response.into_body())
            .await
            .map_err(|e| e.to_string())?;
        if !sender.is_closed() {
            self.pool.lock().await.push(sender);
        }
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("HTTP {status}"))
        }
    }
}
