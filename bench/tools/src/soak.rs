//! Soak run for any Pusher-compatible server: for a bounded time, clients
//! keep connecting, subscribing to public and presence channels, leaving
//! and coming back, while a publisher triggers numbered events through the
//! signed HTTP API. Checks what users would notice:
//!
//! - every event published while a client was subscribed reached it, in
//!   order (an event counts once its trigger *started* after the client's
//!   `subscription_succeeded` and *finished* before the client left);
//! - the server's memory after the churn is back near where it started.
//!
//! `bench/soak.sh` starts flarum-ws, runs this and checks the server's log.
//! `cargo run --release -p flarum-ws-bench --bin soak -- --help`

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use rand::RngExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

mod support;
use support::{App, Target, rss_kib};

#[derive(Debug, Parser, Clone)]
struct Args {
    #[command(flatten)]
    target: Target,
    /// How long to churn, in seconds.
    #[arg(long, default_value_t = 120)]
    seconds: u64,
    /// Clients churning at once.
    #[arg(long, default_value_t = 300)]
    clients: usize,
    /// Channels (half public, half presence).
    #[arg(long, default_value_t = 20)]
    channels: usize,
    /// Events triggered per second, spread over the channels.
    #[arg(long, default_value_t = 200)]
    events_per_second: u64,
    /// Seconds to wait after the churn before reading memory again.
    #[arg(long, default_value_t = 12)]
    settle: u64,
}

/// Per channel: triggers started and finished (the event numbers).
struct Published {
    started: Vec<AtomicU64>,
    finished: Vec<AtomicU64>,
}

fn channel_name(index: usize) -> String {
    if index.is_multiple_of(2) {
        format!("soak-{index}")
    } else {
        format!("presence-soak-{index}")
    }
}

#[derive(Default)]
struct Tally {
    sessions: AtomicU64,
    subscriptions: AtomicU64,
    delivered: AtomicU64,
    owed: AtomicU64,
    lost: AtomicU64,
    out_of_order: AtomicU64,
    failures: AtomicU64,
}

/// One subscription's window: events numbered above `from` must arrive,
/// up to what was finished when the client left.
struct Window {
    from: u64,
    seen: Vec<u64>,
}

async fn client_session(
    app: &App,
    args: &Args,
    published: &Published,
    tally: &Tally,
    user: u64,
) -> Result<(), String> {
    let url = format!(
        "ws://{}:{}/app/{}?protocol=7&client=soak",
        args.target.host, args.target.port, args.target.key
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    tally.sessions.fetch_add(1, Ordering::Relaxed);
    let (wanted, stay, unsubscribe_first) = {
        let mut rng = rand::rng();
        let mut wanted: Vec<usize> = (0..rng.random_range(1..=3))
            .map(|_| rng.random_range(0..args.channels))
            .collect();
        wanted.sort_unstable();
        wanted.dedup();
        let stay = Duration::from_millis(rng.random_range(200..3000));
        // Half the clients unsubscribe before they go, the others just go.
        (wanted, stay, rng.random_bool(0.5))
    };
    let mut windows: HashMap<usize, Window> = HashMap::new();
    let mut left_at: Option<Instant> = None;
    let entered = Instant::now();
    let deadline = entered + stay + Duration::from_secs(10);
    loop {
        if Instant::now() > deadline {
            return Err("session did not finish".into());
        }
        // Leave once the stay is over and every owed event has arrived.
        if let Some(left) = left_at {
            let all_arrived = windows.iter().all(|(index, window)| {
                let until = published.finished[*index].load(Ordering::SeqCst);
                window.seen.last().copied().unwrap_or(window.from) >= until.max(window.from)
            });
            if all_arrived || left.elapsed() > Duration::from_secs(3) {
                break;
            }
        }
        let frame = match tokio::time::timeout(Duration::from_millis(100), ws.next()).await {
            Err(_) => {
                if left_at.is_none()
                    && all_subscribed(&windows, &wanted)
                    && entered.elapsed() >= stay
                {
                    left_at = Some(Instant::now());
                }
                continue;
            }
            Ok(None) => return Err("closed by the server".into()),
            Ok(Some(Err(e))) => return Err(format!("read: {e}")),
            Ok(Some(Ok(Message::Text(text)))) => text,
            Ok(Some(Ok(_))) => continue,
        };
        let message: Value = serde_json::from_str(&frame).map_err(|e| e.to_string())?;
        let event = message["event"].as_str().unwrap_or_default();
        match event {
            "pusher:connection_established" => {
                let data: Value = serde_json::from_str(message["data"].as_str().unwrap_or("{}"))
                    .unwrap_or_default();
                let socket_id = data["socket_id"].as_str().unwrap_or_default();
                for index in &wanted {
                    let channel = channel_name(*index);
                    let mut subscribe = json!({ "channel": channel });
                    if channel.starts_with("presence-") {
                        let member = json!({"user_id": user.to_string(), "user_info": {"n": user}})
                            .to_string();
                        subscribe["auth"] =
                            json!(app.channel_auth(socket_id, &channel, Some(&member)));
                        subscribe["channel_data"] = json!(member);
                    }
                    let text = json!({"event": "pusher:subscribe", "data": subscribe}).to_string();
                    ws.send(Message::text(text))
                        .await
                        .map_err(|e| e.to_string())?;
                }
            }
            "pusher_internal:subscription_succeeded" => {
                let channel = message["channel"].as_str().unwrap_or_default();
                if let Some(index) = (0..args.channels).find(|i| channel_name(*i) == channel) {
                    let from = published.started[index].load(Ordering::SeqCst);
                    windows.entry(index).or_insert(Window {
                        from,
                        seen: Vec::new(),
                    });
                    tally.subscriptions.fetch_add(1, Ordering::Relaxed);
                }
            }
            "soak" => {
                let channel = message["channel"].as_str().unwrap_or_default();
                let number: u64 = message["data"].as_str().unwrap_or("0").parse().unwrap_or(0);
                if let Some((_, window)) = windows
                    .iter_mut()
                    .find(|(i, _)| channel_name(**i) == channel)
                {
                    if window.seen.last().is_some_and(|last| number <= *last) {
                        tally.out_of_order.fetch_add(1, Ordering::Relaxed);
                    }
                    window.seen.push(number);
                }
            }
            _ => {}
        }
        if left_at.is_none() && all_subscribed(&windows, &wanted) && entered.elapsed() >= stay {
            left_at = Some(Instant::now());
        }
    }
    // What was owed: every event started after subscribing and finished before leaving.
    for (index, window) in &windows {
        let until = published.finished[*index].load(Ordering::SeqCst);
        let owed: Vec<u64> = (window.from + 1..=until).collect();
        let seen: std::collections::HashSet<u64> = window.seen.iter().copied().collect();
        let missing = owed.iter().filter(|n| !seen.contains(n)).count() as u64;
        tally.owed.fetch_add(owed.len() as u64, Ordering::Relaxed);
        tally.lost.fetch_add(missing, Ordering::Relaxed);
        tally
            .delivered
            .fetch_add(window.seen.len() as u64, Ordering::Relaxed);
    }
    if unsubscribe_first {
        for index in windows.keys() {
            let text =
                json!({"event": "pusher:unsubscribe", "data": {"channel": channel_name(*index)}});
            let _ = ws.send(Message::text(text.to_string())).await;
        }
    }
    let _ = ws.close(None).await;
    Ok(())
}

fn all_subscribed(windows: &HashMap<usize, Window>, wanted: &[usize]) -> bool {
    wanted.iter().all(|index| windows.contains_key(index))
}

async fn publisher(app: App, args: Arc<Args>, published: Arc<Published>, until: Instant) -> u64 {
    let http = reqwest::Client::new();
    let interval = Duration::from_secs_f64(1.0 / args.events_per_second.max(1) as f64);
    let mut ticker = tokio::time::interval(interval);
    let mut failures = 0;
    let mut next_channel = 0;
    while Instant::now() < until {
        ticker.tick().await;
        let index = next_channel % args.channels;
        next_channel += 1;
        // One publisher, so numbers per channel are triggered in order.
        let number = published.started[index].fetch_add(1, Ordering::SeqCst) + 1;
        match app
            .trigger(&http, &channel_name(index), "soak", &number.to_string())
            .await
        {
            Ok(()) => published.finished[index].store(number, Ordering::SeqCst),
            Err(error) => {
                failures += 1;
                eprintln!("trigger failed: {error}");
            }
        }
    }
    failures
}

#[tokio::main]
async fn main() {
    let args = Arc::new(Args::parse());
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let app = args.target.app(None);
    let published = Arc::new(Published {
        started: (0..args.channels).map(|_| AtomicU64::new(0)).collect(),
        finished: (0..args.channels).map(|_| AtomicU64::new(0)).collect(),
    });
    let tally = Arc::new(Tally::default());
    let rss_start = rss_kib(args.target.pid);
    let started = Instant::now();
    let until = started + Duration::from_secs(args.seconds);

    let publishing = tokio::spawn(publisher(
        app.clone(),
        args.clone(),
        published.clone(),
        until,
    ));
    let mut peak_rss = rss_start;
    let mut workers = Vec::new();
    for worker in 0..args.clients {
        let (app, args, published, tally) =
            (app.clone(), args.clone(), published.clone(), tally.clone());
        workers.push(tokio::spawn(async move {
            let mut user = worker as u64 * 1_000_000;
            while Instant::now() < until {
                user += 1;
                if let Err(error) = client_session(&app, &args, &published, &tally, user).await {
                    tally.failures.fetch_add(1, Ordering::Relaxed);
                    eprintln!("client {worker}: {error}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }));
    }
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_secs(1)).await;
        peak_rss = peak_rss.max(rss_kib(args.target.pid));
    }
    let publish_failures = publishing.await.unwrap();
    for worker in workers {
        let _ = worker.await;
    }
    tokio::time::sleep(Duration::from_secs(args.settle)).await;
    let rss_end = rss_kib(args.target.pid);

    let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    let events: u64 = published
        .finished
        .iter()
        .map(|n| n.load(Ordering::Relaxed))
        .sum();
    let report = json!({
        "seconds": args.seconds,
        "clients_at_once": args.clients,
        "sessions": get(&tally.sessions),
        "subscriptions": get(&tally.subscriptions),
        "events_published": events,
        "publish_failures": publish_failures,
        "deliveries": get(&tally.delivered),
        "owed": get(&tally.owed),
        "lost": get(&tally.lost),
        "out_of_order": get(&tally.out_of_order),
        "client_failures": get(&tally.failures),
        "rss_start_kib": rss_start,
        "rss_peak_kib": peak_rss,
        "rss_end_kib": rss_end,
    });
    println!("{report}");
    let ok = get(&tally.lost) == 0
        && get(&tally.out_of_order) == 0
        && publish_failures == 0
        && get(&tally.failures) == 0;
    eprintln!(
        "{} s, {} sessions, {} subscriptions, {} events, {} deliveries; owed {} lost {} out of order {}; \
         client failures {}; RSS {} → peak {} → {} KiB",
        args.seconds,
        get(&tally.sessions),
        get(&tally.subscriptions),
        events,
        get(&tally.delivered),
        get(&tally.owed),
        get(&tally.lost),
        get(&tally.out_of_order),
        get(&tally.failures),
        rss_start.unwrap_or(0),
        peak_rss.unwrap_or(0),
        rss_end.unwrap_or(0)
    );
    std::process::exit(if ok { 0 } else { 1 });
}
