//! Sending webhooks to one receiver: a bounded queue, batches of at most
//! [`BATCH_MAX`] events gathered for at most [`BATCH_WINDOW`] (Pusher's
//! numbers), each POSTed with Pusher's signature headers and retried with
//! back-off for up to [`RETRY_FOR`] (Pusher's five minutes) while the
//! receiver fails or answers other than 2xx. One receiver's batches leave
//! in order, one at a time, so a slow receiver delays only its own.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::event::WebhookEvent;
use crate::config::WebhookTarget;
use crate::probe::{ProbeError, Target, request_with_headers};
use crate::protocol::signature::hmac_hex;
use crate::throttle::Throttle;

/// Events in one request at most.
pub const BATCH_MAX: usize = 20;
/// How long the first event of a batch waits for others.
pub const BATCH_WINDOW: Duration = Duration::from_millis(250);
/// Events waiting for one receiver; beyond this new events are dropped.
pub const QUEUE_CAPACITY: usize = 10_000;
/// Bytes of events waiting for one receiver (as they will be sent); beyond
/// this new events are dropped too. Events are shared by every receiver's
/// queue, so a receiver that hangs holds at most this much of its own.
pub const QUEUE_BYTES: usize = 16 * 1024 * 1024;
/// How long a batch is retried before it is dropped.
pub const RETRY_FOR: Duration = Duration::from_secs(300);
const FIRST_RETRY: Duration = Duration::from_secs(1);
const LONGEST_WAIT: Duration = Duration::from_secs(60);

/// Totals of every receiver, for metrics.
#[derive(Debug, Default)]
pub struct Totals {
    /// Events a receiver acknowledged with 2xx.
    pub sent: AtomicU64,
    /// Requests that failed or were answered other than 2xx.
    pub failed: AtomicU64,
    /// Events given up on (retried too long, or the queue was full).
    pub dropped: AtomicU64,
}

/// The signing credentials of the app.
#[derive(Clone)]
pub struct Signer {
    pub key: String,
    pub secret: String,
}

impl Signer {
    /// Signs with `app`'s key and secret, as Pusher signs webhooks.
    pub fn for_app(app: &crate::config::AppCredentials) -> Self {
        Self {
            key: app.key.clone(),
            secret: app.secret.expose().to_owned(),
        }
    }

    /// The body and headers of one webhook request.
    pub fn sign(
        &self,
        events: &[&WebhookEvent],
        time_ms: u128,
    ) -> (String, [(&'static str, String); 2]) {
        let body = serde_json::json!({ "time_ms": time_ms, "events": events }).to_string();
        let signature = hmac_hex(&self.secret, &body);
        (
            body,
            [
                ("x-pusher-key", self.key.clone()),
                ("x-pusher-signature", signature),
            ],
        )
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

/// Where a receiver's requests go.
pub struct Endpoint {
    target: Target,
    path: String,
    url: String,
}

impl Endpoint {
    /// `None` for a URL that config validation would have refused.
    pub fn parse(url: &str) -> Option<Self> {
        let uri: hyper::Uri = url.parse().ok()?;
        let tls = uri.scheme_str() == Some("https");
        let host = uri.host()?.trim_start_matches('[').trim_end_matches(']');
        Some(Self {
            target: Target {
                address: host.to_owned(),
                port: uri.port_u16().unwrap_or(if tls { 443 } else { 80 }),
                tls,
                server_name: host.to_owned(),
                insecure: false,
            },
            path: uri
                .path_and_query()
                .map_or("/".to_owned(), |p| p.as_str().to_owned()),
            url: url.to_owned(),
        })
    }

    /// POSTs one signed body; `Err` says why it did not count as received.
    pub async fn post(&self, body: String, headers: &[(&str, String)]) -> Result<(), PostError> {
        match request_with_headers(&self.target, "POST", &self.path, body, headers).await {
            Ok((status, _)) if (200..300).contains(&status) => Ok(()),
            Ok((status, _)) => Err(PostError::Answered(status)),
            Err(error) => Err(PostError::Unreachable(error)),
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }
}

/// Why a receiver did not take a request.
#[derive(Debug, thiserror::Error)]
pub enum PostError {
    #[error("{0}")]
    Unreachable(ProbeError),
    #[error("it answered {0} instead of 2xx")]
    Answered(u16),
}

/// One receiver: what it wants and its queue.
pub struct Receiver {
    pub target: WebhookTarget,
    queue: mpsc::Sender<Arc<WebhookEvent>>,
    /// Bytes of the events in `queue`.
    queued_bytes: Arc<AtomicUsize>,
    full: Throttle,
}

impl Receiver {
    /// Starts the receiver's sender task.
    pub fn start(
        target: WebhookTarget,
        signer: Arc<ArcSwap<Signer>>,
        totals: Arc<Totals>,
        shutdown: CancellationToken,
    ) -> Option<Self> {
        let endpoint = Endpoint::parse(&target.url)?;
        let (queue, waiting) = mpsc::channel(QUEUE_CAPACITY);
        let queued_bytes = Arc::new(AtomicUsize::new(0));
        let queue_side = Queued {
            events: waiting,
            bytes: queued_bytes.clone(),
        };
        tokio::spawn(send_batches(endpoint, queue_side, signer, totals, shutdown));
        Some(Self {
            target,
            queue,
            queued_bytes,
            full: Throttle::new(Duration::from_secs(60)),
        })
    }

    /// Queues `event` if this receiver wants it; never waits.
    pub fn offer(&self, event: &Arc<WebhookEvent>, totals: &Totals) {
        if !self.target.wants(event.kind(), event.channel()) {
            return;
        }
        let size = event.size();
        let over_budget = self.queued_bytes.load(Ordering::Relaxed) + size > QUEUE_BYTES;
        if over_budget || self.queue.try_send(event.clone()).is_err() {
            totals.dropped.fetch_add(1, Ordering::Relaxed);
            if let Some(held_back) = self.full.ready() {
                tracing::warn!(
                    "Webhook queue for {} is full ({QUEUE_CAPACITY} events or {} MiB waiting): dropping new events ({held_back} more dropped since the last warning). Is the receiver down or slow?",
                    self.target.url,
                    QUEUE_BYTES / (1024 * 1024)
                );
            }
            return;
        }
        self.queued_bytes.fetch_add(size, Ordering::Relaxed);
    }
}

/// The sender task's end of a receiver's queue.
struct Queued {
    events: mpsc::Receiver<Arc<WebhookEvent>>,
    bytes: Arc<AtomicUsize>,
}

impl Queued {
    async fn recv(&mut self) -> Option<Arc<WebhookEvent>> {
        let event = self.events.recv().await?;
        self.bytes.fetch_sub(event.size(), Ordering::Relaxed);
        Some(event)
    }
}

async fn send_batches(
    endpoint: Endpoint,
    mut waiting: Queued,
    signer: Arc<ArcSwap<Signer>>,
    totals: Arc<Totals>,
    shutdown: CancellationToken,
) {
    loop {
        let first = tokio::select! {
            _ = shutdown.cancelled() => return,
            event = waiting.recv() => match event {
                Some(event) => event,
                None => return,
            },
        };
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + BATCH_WINDOW;
        while batch.len() < BATCH_MAX {
            match tokio::time::timeout_at(deadline, waiting.recv()).await {
                Ok(Some(event)) => batch.push(event),
                _ => break,
            }
        }
        let events: Vec<&WebhookEvent> = batch.iter().map(|event| &**event).collect();
        let (body, headers) = signer.load().sign(&events, now_ms());
        let delivered = tokio::select! {
            _ = shutdown.cancelled() => return,
            delivered = deliver(&endpoint, body, &headers, &totals) => delivered,
        };
        let counter = if delivered {
            &totals.sent
        } else {
            &totals.dropped
        };
        counter.fetch_add(batch.len() as u64, Ordering::Relaxed);
        if !delivered {
            tracing::warn!(
                "Gave up on {} webhook event(s) for {} after retrying for {} minutes",
                batch.len(),
                endpoint.url(),
                RETRY_FOR.as_secs() / 60
            );
        }
    }
}

/// Sends one batch, retrying with back-off; whether it was received.
async fn deliver(
    endpoint: &Endpoint,
    body: String,
    headers: &[(&str, String)],
    totals: &Totals,
) -> bool {
    let started = Instant::now();
    let mut wait = FIRST_RETRY;
    for attempt in 1.. {
        let problem = match endpoint.post(body.clone(), headers).await {
            Ok(()) => {
                if attempt > 1 {
                    tracing::info!(
                        "Webhook to {} delivered at attempt {attempt}",
                        endpoint.url()
                    );
                }
                return true;
            }
            Err(problem) => problem,
        };
        totals.failed.fetch_add(1, Ordering::Relaxed);
        if started.elapsed() + wait > RETRY_FOR {
            tracing::warn!("Webhook to {} failed again: {problem}", endpoint.url());
            return false;
        }
        if attempt == 1 {
            tracing::warn!(
                "Webhook to {} failed: {problem}; retrying with back-off for up to {} minutes",
                endpoint.url(),
                RETRY_FOR.as_secs() / 60
            );
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(LONGEST_WAIT);
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_the_body_with_the_secret() {
        let signer = Signer {
            key: "key".into(),
            secret: "secret".into(),
        };
        let (body, headers) = signer.sign(
            &[&WebhookEvent::ChannelOccupied {
                channel: "a".into(),
            }],
            1,
        );
        assert_eq!(
            body,
            r#"{"events":[{"channel":"a","name":"channel_occupied"}],"time_ms":1}"#
        );
        assert_eq!(headers[0], ("x-pusher-key", "key".to_owned()));
        assert_eq!(headers[1].1, hmac_hex("secret", &body));
    }

    #[test]
    fn endpoints_default_their_port_by_scheme() {
        let plain = Endpoint::parse("http://127.0.0.1/hook?x=1").unwrap();
        assert_eq!((plain.target.port, plain.path.as_str()), (80, "/hook?x=1"));
        let secure = Endpoint::parse("https://forum.example").unwrap();
        assert_eq!((secure.target.port, secure.target.tls), (443, true));
    }
}
