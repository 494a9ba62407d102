//! Reconnect storm for any Pusher-compatible server: N forum tabs come back
//! at once (after a restart, a deploy or a network blip), each opening a
//! websocket and subscribing, with auth, to its user's private channel and
//! to a presence channel (one of `--presence-channels`, as tabs spread over
//! discussions), as a forum tab does.
//!
//! Prints one JSON line: tabs, how many were fully subscribed and how many
//! failed (with the first error), seconds until the last was subscribed,
//! reconnects per second, server CPU microseconds per reconnect and
//! reconnects per server CPU-second, RSS before, at the peak and after
//! every tab left (from /proc/PID).
//!
//! `cargo run --release -p flarum-ws-bench --bin reconnect_storm -- --help`

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::{Mutex, Semaphore};
use tokio_tungstenite::tungstenite::Message;

mod support;
use support::{App, Target, cpu_micros, rss_kib};

#[derive(Debug, Parser)]
struct Args {
    #[command(flatten)]
    target: Target,
    /// Tabs reconnecting together.
    #[arg(long, default_value_t = 15_000)]
    tabs: usize,
    /// Presence channels the tabs are spread over.
    #[arg(long, default_value_t = 100)]
    presence_channels: usize,
    /// Connection attempts in flight at once (the rest wait their turn, as
    /// browsers' own back-off spreads them).
    #[arg(long, default_value_t = 2_000)]
    in_flight: usize,
    /// Seconds a tab may take to be subscribed before it counts as failed.
    #[arg(long, default_value_t = 60)]
    timeout: u64,
    /// Seconds to wait after every tab left before reading memory again.
    #[arg(long, default_value_t = 8)]
    after_leave: u64,
    #[arg(long, default_value = "run")]
    label: String,
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let app = args.target.app(None);
    let pid = args.target.pid;
    let url = format!(
        "ws://{}:{}/app/{}?protocol=7&client=js&version=8.4.0",
        args.target.host, args.target.port, args.target.key
    );
    let rss_before = rss_kib(pid);
    let peak = Arc::new(AtomicU64::new(rss_before.unwrap_or(0)));
    let sampling = tokio::spawn(sample_peak(pid, peak.clone()));
    let cpu_before = cpu_micros(pid);
    let started = Instant::now();

    let gate = Arc::new(Semaphore::new(args.in_flight));
    let first_error = Arc::new(Mutex::new(None::<String>));
    let mut tabs = Vec::with_capacity(args.tabs);
    for user in 0..args.tabs {
        let (url, app, gate, first_error) =
            (url.clone(), app.clone(), gate.clone(), first_error.clone());
        let presence = format!(
            "presence-discussion-{}",
            user % args.presence_channels.max(1)
        );
        let timeout = Duration::from_secs(args.timeout);
        tabs.push(tokio::spawn(async move {
            let permit = gate.acquire_owned().await.ok()?;
            let result =
                tokio::time::timeout(timeout, reconnect(&url, &app, user, &presence)).await;
            drop(permit);
            match result {
                Ok(Ok(socket)) => Some(socket),
                Ok(Err(error)) => {
                    first_error.lock().await.get_or_insert(error);
                    None
                }
                Err(_) => {
                    first_error
                        .lock()
                        .await
                        .get_or_insert(format!("not subscribed within {timeout:?}"));
                    None
                }
            }
        }));
    }
    let mut sockets = Vec::with_capacity(args.tabs);
    for tab in tabs {
        if let Ok(Some(socket)) = tab.await {
            sockets.push(socket);
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu_used = match (cpu_before, cpu_micros(pid)) {
        (Some(before), Some(after)) => Some(after.saturating_sub(before)),
        _ => None,
    };
    let subscribed = sockets.len();
    for socket in &mut sockets {
        let _ = socket.close(None).await;
    }
    drop(sockets);
    tokio::time::sleep(Duration::from_secs(args.after_leave)).await;
    sampling.abort();
    let cpu_per_reconnect = cpu_used.map(|cpu| cpu as f64 / subscribed.max(1) as f64);
    println!(
        "{}",
        json!({
            "label": args.label,
            "tabs": args.tabs,
            "presence_channels": args.presence_channels,
            "subscribed": subscribed,
            "failed": args.tabs - subscribed,
            "first_error": first_error.lock().await.clone(),
            "seconds": (seconds * 1000.0).round() / 1000.0,
            "reconnects_per_sec": (subscribed as f64 / seconds).round(),
            "server_cpu_us_per_reconnect": cpu_per_reconnect.map(|us| (us * 10.0).round() / 10.0),
            "reconnects_per_cpu_second": cpu_per_reconnect.map(|us| (1e6 / us).round()),
            "rss_before_kib": rss_before,
            "rss_peak_kib": peak.load(Ordering::Relaxed),
            "rss_after_kib": rss_kib(pid),
        })
    );
}

/// One tab: connect, then subscribe to its private and presence channels
/// with auth, and wait until both succeeded.
async fn reconnect(url: &str, app: &App, user: usize, presence: &str) -> Result<Socket, String> {
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let established = next_event(&mut ws).await?;
    let socket_id = serde_json::from_str::<Value>(established["data"].as_str().unwrap_or("{}"))
        .ok()
        .and_then(|data| data["socket_id"].as_str().map(str::to_owned))
        .ok_or_else(|| format!("no socket id in {established}"))?;
    let private = format!("private-user-{user}");
    let channel_data =
        json!({"user_id": user.to_string(), "user_info": {"name": format!("user {user}")}})
            .to_string();
    for (channel, data) in [
        (private.as_str(), None),
        (presence, Some(channel_data.as_str())),
    ] {
        let mut subscribe = json!({
            "channel": channel,
            "auth": app.channel_auth(&socket_id, channel, data),
        });
        if let Some(data) = data {
            subscribe["channel_data"] = json!(data);
        }
        let message = json!({"event": "pusher:subscribe", "data": subscribe}).to_string();
        ws.send(Message::text(message))
            .await
            .map_err(|e| format!("send: {e}"))?;
    }
    let mut waiting = 2;
    while waiting > 0 {
        let event = next_event(&mut ws).await?;
        match event["event"].as_str() {
            Some("pusher_internal:subscription_succeeded") => waiting -= 1,
            Some("pusher:subscription_error" | "pusher:error") => {
                return Err(format!("refused: {event}"));
            }
            _ => {}
        }
    }
    Ok(ws)
}

async fn next_event(ws: &mut Socket) -> Result<Value, String> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => {
                return serde_json::from_str(&text).map_err(|e| format!("bad frame: {e}"));
            }
            Some(Ok(Message::Close(frame))) => return Err(format!("closed: {frame:?}")),
            Some(Ok(_)) => {}
            Some(Err(error)) => return Err(format!("read: {error}")),
            None => return Err("connection ended".into()),
        }
    }
}

/// Reads the server's RSS every 50 ms, keeping the largest.
async fn sample_peak(pid: Option<u32>, peak: Arc<AtomicU64>) {
    loop {
        if let Some(rss) = rss_kib(pid) {
            peak.fetch_max(rss, Ordering::Relaxed);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
