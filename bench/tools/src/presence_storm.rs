//! Presence join storm for any Pusher-compatible server: N users join one
//! presence channel one after another, every one of them reading, as a
//! forum's online list fills up. Each join sends `member_added` to every
//! member already there and the whole list to the joiner, so n joins cost
//! about n²/2 deliveries whatever the server; what differs is the server's
//! CPU for them and the memory it keeps.
//!
//! Prints one JSON line: joins, seconds, server CPU seconds, RSS before,
//! at the peak and after everyone left (from /proc/PID).
//!
//! `cargo run --release -p flarum-ws-bench --bin presence_storm -- --help`

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

mod support;
use support::{Target, cpu_micros, rss_kib};

#[derive(Debug, Parser)]
struct Args {
    #[command(flatten)]
    target: Target,
    /// Users joining the presence channel, one after another.
    #[arg(long, default_value_t = 2000)]
    members: usize,
    /// Bytes of `user_info` per member.
    #[arg(long, default_value_t = 100)]
    user_info: usize,
    /// Seconds to wait after everyone left before reading memory again.
    #[arg(long, default_value_t = 8)]
    after_leave: u64,
    #[arg(long, default_value = "run")]
    label: String,
}

const CHANNEL: &str = "presence-storm";

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let app = args.target.app(None);
    let pid = args.target.pid;
    let url = format!(
        "ws://{}:{}/app/{}?protocol=7&client=js&version=8.4.0",
        args.target.host, args.target.port, args.target.key
    );
    let rss_before = rss_kib(pid);
    let cpu_before = cpu_micros(pid);
    let frames = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut readers = Vec::with_capacity(args.members);
    let info = "i".repeat(args.user_info);
    for user in 0..args.members {
        let (mut ws, _) = tokio_tungstenite::connect_async(&url)
            .await
            .expect("websocket handshake");
        let established = next_json(&mut ws).await;
        let data: Value = serde_json::from_str(established["data"].as_str().unwrap()).unwrap();
        let socket_id = data["socket_id"].as_str().unwrap().to_owned();
        let channel_data =
            json!({"user_id": user.to_string(), "user_info": {"name": info}}).to_string();
        let auth = app.channel_auth(&socket_id, CHANNEL, Some(&channel_data));
        let subscribe = json!({"event": "pusher:subscribe", "data": {
            "channel": CHANNEL, "auth": auth, "channel_data": channel_data}});
        ws.send(Message::text(subscribe.to_string())).await.unwrap();
        loop {
            let frame = next_json(&mut ws).await;
            if frame["event"] == "pusher_internal:subscription_succeeded" {
                break;
            }
        }
        // Every member keeps reading (member_added for everyone after them).
        let (sink, mut stream) = ws.split();
        let counter = frames.clone();
        readers.push((
            sink,
            tokio::spawn(async move {
                while let Some(Ok(_)) = stream.next().await {
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            }),
        ));
    }
    // The last member_added frames reach the first members.
    let expected = (args.members * (args.members - 1) / 2) as u64;
    let deadline = Instant::now() + Duration::from_secs(60);
    while frames.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    let rss_peak = rss_kib(pid);
    let cpu_after = cpu_micros(pid);
    for (mut sink, reader) in readers {
        let _ = sink.close().await;
        reader.abort();
    }
    tokio::time::sleep(Duration::from_secs(args.after_leave)).await;
    let rss_after = rss_kib(pid);
    let cpu_seconds = match (cpu_before, cpu_after) {
        (Some(before), Some(after)) => Some((after - before) as f64 / 1e6),
        _ => None,
    };
    println!(
        "{}",
        json!({
            "label": args.label,
            "members": args.members,
            "user_info_bytes": args.user_info,
            "member_added_received": frames.load(Ordering::Relaxed),
            "member_added_expected": expected,
            "seconds": seconds,
            "server_cpu_seconds": cpu_seconds,
            "rss_before_kib": rss_before,
            "rss_peak_kib": rss_peak,
            "rss_after_leave_kib": rss_after,
        })
    );
}

async fn next_json<S>(ws: &mut S) -> Value
where
    S: StreamExt<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => return serde_json::from_str(&text).unwrap(),
            Some(Ok(_)) => continue,
            other => panic!("connection ended: {other:?}"),
        }
    }
}
