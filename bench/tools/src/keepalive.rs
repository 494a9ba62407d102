//! What keeping idle connections alive costs the server: N websocket
//! clients connect, subscribe, and then do only what an idle pusher-js tab
//! does when the server pings first (answer each `pusher:ping` with a
//! `pusher:pong`). Over a measuring window it counts the pings the clients
//! got and reads the server's CPU time from /proc, and prints one JSON line:
//! pings per second, the share of one core, and CPU microseconds per ping
//! (the ping out and the pong in).
//!
//! `cargo run --release -p flarum-ws-bench --bin keepalive -- --help`

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;

mod support;
use support::{Target, cpu_micros, rss_kib};

#[derive(Debug, Parser, Clone)]
struct Args {
    #[command(flatten)]
    target: Target,
    /// Idle clients to hold.
    #[arg(long, default_value_t = 10_000)]
    connections: usize,
    /// Connections opened at once.
    #[arg(long, default_value_t = 200)]
    concurrency: usize,
    /// Seconds to wait after every client subscribed, so the pings spread
    /// out over the activity timeout before measuring.
    #[arg(long, default_value_t = 35)]
    warmup: u64,
    /// Seconds to measure over.
    #[arg(long, default_value_t = 60)]
    window: u64,
    /// A name for this run in the output.
    #[arg(long, default_value = "run")]
    label: String,
}

async fn idle_client(
    args: Arc<Args>,
    index: usize,
    opened: Arc<Semaphore>,
    pings: Arc<AtomicU64>,
    ready: tokio::sync::mpsc::Sender<Result<(), String>>,
) {
    let url = format!(
        "ws://{}:{}/app/{}?protocol=7&client=js&version=8.4.0",
        args.target.host, args.target.port, args.target.key
    );
    let permit = opened.acquire().await.unwrap();
    let mut ws = match tokio_tungstenite::connect_async(url.as_str()).await {
        Ok((ws, _)) => ws,
        Err(e) => {
            let _ = ready.send(Err(format!("connect: {e}"))).await;
            return;
        }
    };
    drop(permit);
    let subscribe =
        json!({"event": "pusher:subscribe", "data": {"channel": format!("idle-{}", index % 100)}});
    let mut subscribed = false;
    while let Some(Ok(message)) = ws.next().await {
        let Message::Text(text) = message else {
            continue;
        };
        if text.contains("pusher:connection_established") {
            if ws.send(Message::text(subscribe.to_string())).await.is_err() {
                break;
            }
        } else if text.contains("subscription_succeeded") && !subscribed {
            subscribed = true;
            let _ = ready.send(Ok(())).await;
        } else if text.contains("pusher:ping") {
            pings.fetch_add(1, Ordering::Relaxed);
            if ws
                .send(Message::text(r#"{"event":"pusher:pong","data":{}}"#))
                .await
                .is_err()
            {
                break;
            }
        }
    }
    if !subscribed {
        let _ = ready.send(Err("closed before subscribing".into())).await;
    }
}

#[tokio::main]
async fn main() {
    let args = Arc::new(Args::parse());
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let opened = Arc::new(Semaphore::new(args.concurrency));
    let pings = Arc::new(AtomicU64::new(0));
    let (ready_tx, mut ready) = tokio::sync::mpsc::channel(args.connections);
    for index in 0..args.connections {
        tokio::spawn(idle_client(
            args.clone(),
            index,
            opened.clone(),
            pings.clone(),
            ready_tx.clone(),
        ));
    }
    drop(ready_tx);
    let mut failed = 0;
    for _ in 0..args.connections {
        match ready.recv().await {
            Some(Ok(())) => {}
            Some(Err(e)) => {
                failed += 1;
                if failed == 1 {
                    eprintln!("a client failed: {e}");
                }
            }
            None => break,
        }
    }
    tokio::time::sleep(Duration::from_secs(args.warmup)).await;
    let pid = args.target.pid;
    let (cpu_before, pings_before, started) = (
        cpu_micros(pid),
        pings.load(Ordering::Relaxed),
        Instant::now(),
    );
    tokio::time::sleep(Duration::from_secs(args.window)).await;
    let elapsed = started.elapsed().as_secs_f64();
    let pinged = pings.load(Ordering::Relaxed) - pings_before;
    let cpu_us = cpu_micros(pid)
        .zip(cpu_before)
        .map(|(after, before)| after.saturating_sub(before));
    let per_second = pinged as f64 / elapsed;
    let report = json!({
        "label": args.label,
        "connections": args.connections,
        "failed": failed,
        "window_s": elapsed,
        "pings": pinged,
        "pings_per_second": per_second,
        "server_cpu_s": cpu_us.map(|us| us as f64 / 1e6),
        "server_core_percent": cpu_us.map(|us| us as f64 / 1e6 / elapsed * 100.0),
        "cpu_us_per_ping": cpu_us.filter(|_| pinged > 0).map(|us| us as f64 / pinged as f64),
        "server_rss_kib": rss_kib(pid),
    });
    println!("{report}");
    std::process::exit(0);
}
