//! Load generator for any Pusher-compatible server (flarum-ws, sockudo,
//! soketi...): opens N websocket clients, subscribes them to C channels,
//! triggers E events through the signed HTTP API and measures what the
//! users and the operator would notice: connect rate, resident memory per
//! connection, deliveries per second, latency percentiles, lost messages and
//! the server's CPU time per delivered message (from /proc/PID/stat).
//!
//! `cargo run --release -p flarum-ws-bench --bin loadgen -- --help`
//!
//! Each event's data is `T<send time in µs>:S<sequence>:<padding>`, so a
//! client finds the send time without parsing JSON.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;

mod support;
use support::{App, Target, TlsPublisher, cpu_micros, now_micros, rss_kib};

#[derive(Debug, Parser, Clone)]
struct Args {
    #[command(flatten)]
    target: Target,
    /// Trigger through this port instead (another node of a cluster).
    #[arg(long)]
    publish_port: Option<u16>,
    /// Websocket clients to open.
    #[arg(long, default_value_t = 1000)]
    connections: usize,
    /// Channels the clients are spread over.
    #[arg(long, default_value_t = 10)]
    channels: usize,
    /// Start of the channel names, so several load generators on one
    /// cluster keep to their own channels.
    #[arg(long, default_value = "bench-")]
    channel_prefix: String,
    /// Connections opened at once.
    #[arg(long, default_value_t = 200)]
    concurrency: usize,
    /// Subscribe to private channels (signed auth) instead of public ones.
    #[arg(long)]
    private: bool,
    /// Connect with TLS (wss://) and trigger over HTTPS (kept-alive
    /// connections, one per publisher); the certificate is not verified (a
    /// bench measures the encryption, not the trust chain).
    #[arg(long)]
    tls: bool,
    /// Events to trigger through the HTTP API.
    #[arg(long, default_value_t = 100)]
    events: usize,
    /// Target deliveries per second (0 = as fast as the server accepts).
    #[arg(long, default_value_t = 0)]
    deliveries_per_second: u64,
    /// Event payload size in bytes.
    #[arg(long, default_value_t = 100)]
    payload: usize,
    /// HTTP requests in flight at once.
    #[arg(long, default_value_t = 8)]
    publishers: usize,
    /// Seconds to hold the subscribed connections idle before measuring memory.
    #[arg(long, default_value_t = 2)]
    settle: u64,
    /// Seconds to wait after disconnecting before reading memory again.
    #[arg(long, default_value_t = 8)]
    after_disconnect: u64,
    /// A name for this run in the output.
    #[arg(long, default_value = "run")]
    label: String,
}

/// The app under test, triggered through `--publish-port` when given.
fn app(args: &Args) -> App {
    args.target.app(args.publish_port)
}

/// What one client saw.
#[derive(Default)]
struct ClientReport {
    latencies_us: Vec<u32>,
}

async fn run_client(
    args: Arc<Args>,
    index: usize,
    opened: Arc<Semaphore>,
    received_total: Arc<AtomicU64>,
    stop: tokio_util::sync::CancellationToken,
    ready: tokio::sync::mpsc::Sender<Result<(), String>>,
) -> ClientReport {
    let url = format!(
        "{}://{}:{}/app/{}?protocol=7&client=js&version=8.4.0",
        if args.tls { "wss" } else { "ws" },
        args.target.host,
        args.target.port,
        args.target.key
    );
    let permit = opened.acquire().await.unwrap();
    let target = flarum_ws::probe::Target {
        address: args.target.host.clone(),
        port: args.target.port,
        tls: args.tls,
        server_name: "localhost".into(),
        insecure: true,
    };
    let connected = match flarum_ws::probe::connect(&target).await {
        Ok(stream) => tokio_tungstenite::client_async(url.as_str(), stream)
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    let mut ws = match connected {
        Ok((ws, _)) => ws,
        Err(e) => {
            let _ = ready.send(Err(format!("connect: {e}"))).await;
            return ClientReport::default();
        }
    };
    // The handshake is done: let the next client connect.
    drop(permit);
    let channel = format!(
        "{}{}{}",
        if args.private { "private-" } else { "" },
        args.channel_prefix,
        index % args.channels
    );
    let mut report = ClientReport::default();
    let mut subscribed = false;
    loop {
        let message = tokio::select! {
            _ = stop.cancelled() => break,
            m = ws.next() => m,
        };
        let Some(Ok(Message::Text(text))) = message else {
            if matches!(
                message,
                Some(Ok(Message::Ping(_))) | Some(Ok(Message::Pong(_)))
            ) {
                continue;
            }
            if !subscribed {
                let _ = ready
                    .send(Err(format!("closed before subscribing: {message:?}")))
                    .await;
            }
            break;
        };
        if let Some(position) = text.find("\"data\":\"T") {
            let rest = &text[position + 9..];
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            if let Ok(sent) = digits.parse::<u64>() {
                report
                    .latencies_us
                    .push(now_micros().saturating_sub(sent).min(u32::MAX as u64) as u32);
                received_total.fetch_add(1, Ordering::Relaxed);
            }
            continue;
        }
        if text.contains("pusher:connection_established") {
            let data: serde_json::Value = serde_json::from_str(&text).unwrap();
            let inner: serde_json::Value =
                serde_json::from_str(data["data"].as_str().unwrap()).unwrap();
            let socket_id = inner["socket_id"].as_str().unwrap_or_default();
            let mut subscribe = json!({"channel": channel});
            if args.private {
                subscribe["auth"] = json!(app(&args).channel_auth(socket_id, &channel, None));
            }
            let frame = json!({"event": "pusher:subscribe", "data": subscribe}).to_string();
            if ws.send(Message::text(frame)).await.is_err() {
                break;
            }
        } else if text.contains("subscription_succeeded") {
            subscribed = true;
            let _ = ready.send(Ok(())).await;
        } else if text.contains("pusher:ping") {
            let _ = ws
                .send(Message::text(r#"{"event":"pusher:pong","data":{}}"#))
                .await;
        }
    }
    let _ = ws.close(None).await;
    report
}

fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

/// Triggers the events from a runtime on a thread of its own. On the
/// clients' runtime each request would wait its turn behind thousands of
/// client tasks (and so would the next one), so "as fast as the server
/// accepts" would measure the load generator's scheduling, not the server.
async fn publish_on_own_thread(
    args: Arc<Args>,
    subscribers_per_channel: Vec<u64>,
    send_start: Instant,
) -> u64 {
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime for the publishers");
        let errors = runtime.block_on(publish(args, subscribers_per_channel, send_start));
        let _ = done_tx.send(errors);
    });
    done_rx.await.expect("the publisher thread finishes")
}

/// Triggers `--events` events round-robin over the channels, at the fixed
/// rate or with `--publishers` requests in flight; returns how many failed.
async fn publish(args: Arc<Args>, subscribers_per_channel: Vec<u64>, send_start: Instant) -> u64 {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.publishers)
        .build()
        .unwrap();
    let tls = if args.tls && args.events > 0 {
        let port = args.publish_port.unwrap_or(args.target.port);
        match TlsPublisher::open(app(&args), &args.target.host, port, args.publishers).await {
            Ok(publisher) => Some(Arc::new(publisher)),
            Err(error) => {
                eprintln!("cannot open the HTTPS connections for triggering: {error}");
                return args.events as u64;
            }
        }
    } else {
        None
    };
    let padding = "x".repeat(args.payload.saturating_sub(40));
    let gate = Arc::new(Semaphore::new(args.publishers));
    let mut sends = Vec::with_capacity(args.events);
    for event in 0..args.events {
        if args.deliveries_per_second > 0 {
            let per_event = subscribers_per_channel[event % args.channels].max(1) as f64;
            let due = send_start
                + Duration::from_secs_f64(
                    event as f64 * per_event / args.deliveries_per_second as f64,
                );
            tokio::time::sleep_until(due.into()).await;
        }
        let permit = gate.clone().acquire_owned().await.unwrap();
        let (http, args2, tls) = (http.clone(), args.clone(), tls.clone());
        let channel = format!(
            "{}{}{}",
            if args.private { "private-" } else { "" },
            args.channel_prefix,
            event % args.channels
        );
        let data = format!("T{}:S{event}:{padding}", now_micros());
        sends.push(tokio::spawn(async move {
            let result = match tls {
                Some(tls) => tls.trigger(&channel, "bench", &data).await,
                None => app(&args2).trigger(&http, &channel, "bench", &data).await,
            };
            drop(permit);
            result
        }));
    }
    let mut errors = 0;
    for send in sends {
        if send.await.unwrap().is_err() {
            errors += 1;
        }
    }
    errors
}

#[tokio::main]
async fn main() {
    let args = Arc::new(Args::parse());
    // Thousands of clients need thousands of descriptors.
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let rss_before = rss_kib(args.target.pid);

    // Connect and subscribe.
    let opened = Arc::new(Semaphore::new(args.concurrency));
    let received = Arc::new(AtomicU64::new(0));
    let stop = tokio_util::sync::CancellationToken::new();
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel(1024);
    let started = Instant::now();
    let mut clients = Vec::with_capacity(args.connections);
    for index in 0..args.connections {
        clients.push(tokio::spawn(run_client(
            args.clone(),
            index,
            opened.clone(),
            received.clone(),
            stop.clone(),
            ready_tx.clone(),
        )));
    }
    drop(ready_tx);
    let mut subscribed = 0usize;
    let mut failures = 0usize;
    let mut first_error = None;
    while subscribed + failures < args.connections {
        match tokio::time::timeout(Duration::from_secs(60), ready_rx.recv()).await {
            Ok(Some(Ok(()))) => subscribed += 1,
            Ok(Some(Err(e))) => {
                failures += 1;
                first_error.get_or_insert(e);
            }
            _ => break,
        }
    }
    let connect_secs = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(args.settle)).await;
    let rss_subscribed = rss_kib(args.target.pid);

    // Trigger events, round-robin over channels.
    let subscribers_per_channel: Vec<u64> = (0..args.channels)
        .map(|c| (0..subscribed).filter(|i| i % args.channels == c).count() as u64)
        .collect();
    let expected: u64 = (0..args.events)
        .map(|e| subscribers_per_channel[e % args.channels])
        .sum();
    let cpu_start = cpu_micros(args.target.pid);
    let send_start = Instant::now();
    let errors = publish_on_own_thread(args.clone(), subscribers_per_channel, send_start).await;
    // Wait until everything arrived or nothing arrives for 3 s.
    let mut last = received.load(Ordering::Relaxed);
    let mut quiet_since = Instant::now();
    while received.load(Ordering::Relaxed) < expected {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = received.load(Ordering::Relaxed);
        if now != last {
            last = now;
            quiet_since = Instant::now();
        } else if quiet_since.elapsed() > Duration::from_secs(3) {
            break;
        }
    }
    let deliver_secs = send_start.elapsed().as_secs_f64()
        - if received.load(Ordering::Relaxed) < expected {
            3.0
        } else {
            0.0
        };
    let cpu_end = cpu_micros(args.target.pid);

    stop.cancel();
    let mut latencies = Vec::new();
    for client in clients {
        latencies.extend(client.await.unwrap().latencies_us);
    }
    // Servers may give memory back some seconds after clients leave.
    tokio::time::sleep(Duration::from_secs(args.after_disconnect)).await;
    let rss_after = rss_kib(args.target.pid);

    latencies.sort_unstable();
    let delivered = latencies.len() as u64;
    let cpu_per_delivery = match (cpu_start, cpu_end) {
        (Some(a), Some(b)) if delivered > 0 => Some((b - a) as f64 / delivered as f64),
        _ => None,
    };
    let kib_per_connection = match (rss_before, rss_subscribed) {
        (Some(a), Some(b)) if subscribed > 0 => Some((b as f64 - a as f64) / subscribed as f64),
        _ => None,
    };
    let report = json!({
        "label": args.label,
        "connections": args.connections,
        "subscribed": subscribed,
        "connect_failures": failures,
        "first_error": first_error,
        "channels": args.channels,
        "private": args.private,
        "connect_subscribe_per_sec": (subscribed as f64 / connect_secs).round(),
        "rss_before_kib": rss_before,
        "rss_subscribed_kib": rss_subscribed,
        "rss_after_disconnect_kib": rss_after,
        "kib_per_connection": kib_per_connection.map(|k| (k * 100.0).round() / 100.0),
        "events": args.events,
        "trigger_errors": errors,
        "payload_bytes": args.payload,
        "expected_deliveries": expected,
        "delivered": delivered,
        "lost": expected.saturating_sub(delivered),
        "deliveries_per_sec": (delivered as f64 / deliver_secs.max(0.001)).round(),
        "latency_us": {"p50": percentile(&latencies, 0.5), "p99": percentile(&latencies, 0.99), "max": latencies.last().copied().unwrap_or(0)},
        "server_cpu_us_per_delivery": cpu_per_delivery.map(|c| (c * 1000.0).round() / 1000.0),
    });
    println!("{report}");
    eprintln!(
        "{}: {subscribed}/{} subscribed at {:.0}/s; {delivered}/{expected} delivered ({} lost) at {:.0}/s; latency p50 {} µs p99 {} µs max {} µs; server CPU {} µs/delivery; memory {} KiB/connection ({:?} → {:?} → {:?} KiB)",
        args.label,
        args.connections,
        subscribed as f64 / connect_secs,
        expected.saturating_sub(delivered),
        delivered as f64 / deliver_secs.max(0.001),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or(0),
        cpu_per_delivery.map_or("?".into(), |c| format!("{c:.2}")),
        kib_per_connection.map_or("?".into(), |k| format!("{k:.1}")),
        rss_before,
        rss_subscribed,
        rss_after,
    );
}
