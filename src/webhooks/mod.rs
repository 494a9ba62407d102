//! Webhooks, as Pusher sends them: `channel_occupied`, `channel_vacated`,
//! `member_added`, `member_removed`, `client_event`, `cache_miss` and
//! `subscription_count`, POSTed in signed batches to each receiver the
//! settings name.
//!
//! Nothing here runs on the fan-out path: the hub only drops a small
//! [`ChannelChange`] into a bounded queue (lost and counted when full), and
//! one task turns those into events ([`tracker`]) and hands them to each
//! receiver's own bounded queue and sender task ([`delivery`]). A slow or
//! dead receiver fills its own queue and nothing else.
//!
//! On several nodes, occupancy and presence are cluster-wide facts: every
//! node follows the same changes (the other nodes' subscriber counts come
//! over the cluster bus, presence members are mirrored by the hub), and
//! only the node with the smallest id sends them, so each is sent once.
//! Client events and cache misses are sent by the node they happen on.

mod delivery;
mod event;
mod tracker;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// What is read of a receiver's reply at most.
pub use crate::probe::MAX_ANSWER_BYTES as REPLY_BYTES;
pub use delivery::{Endpoint, PostError, QUEUE_BYTES, QUEUE_CAPACITY, Signer, now_ms};
pub use event::WebhookEvent;

use self::delivery::{Receiver, Totals};
use self::tracker::Tracker;
use crate::cluster::Cluster;
use crate::config::{AppCredentials, WebhookTarget};
use crate::hub::{ChangeFeed, ChannelChange, Hub};
use crate::protocol::SocketId;

/// Channel changes waiting for the webhook task; beyond this they are lost
/// and counted as dropped.
const CHANGE_CAPACITY: usize = 65_536;

/// How often settled departures and subscription counts are looked at.
const TICK: Duration = Duration::from_millis(250);

/// Webhook totals for the metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WebhookStatus {
    pub sent: u64,
    pub failed: u64,
    pub dropped: u64,
}

/// The webhook senders: a queue and a task per receiver, fed by the hub's
/// channel changes (and the cluster's), signed with the app's secret.
pub struct Webhooks {
    receivers: Vec<Receiver>,
    signer: Arc<ArcSwap<Signer>>,
    totals: Arc<Totals>,
    /// Hub changes that did not fit the queue.
    changes_dropped: Arc<AtomicU64>,
}

impl Webhooks {
    /// Starts sending to `targets` (none: no webhooks, `None`): watches the
    /// hub's channels and, on several nodes, the cluster's counts.
    pub fn start(
        targets: &[WebhookTarget],
        app: &AppCredentials,
        hub: &Hub,
        cluster: Option<Arc<Cluster>>,
        shutdown: CancellationToken,
    ) -> Option<Arc<Self>> {
        if targets.is_empty() {
            return None;
        }
        let signer = Arc::new(ArcSwap::from_pointee(Signer::for_app(app)));
        let totals = Arc::new(Totals::default());
        let receivers = targets
            .iter()
            .filter_map(|target| {
                Receiver::start(
                    target.clone(),
                    signer.clone(),
                    totals.clone(),
                    shutdown.clone(),
                )
            })
            .collect();
        let (sender, changes) = mpsc::channel(CHANGE_CAPACITY);
        let changes_dropped = Arc::new(AtomicU64::new(0));
        hub.watch_channels(ChangeFeed::new(sender, changes_dropped.clone()));
        let remote = cluster.as_ref().map(|cluster| cluster.watch_counts());
        let webhooks = Arc::new(Self {
            receivers,
            signer,
            totals,
            changes_dropped,
        });
        for target in targets {
            tracing::info!("Sending webhooks to {target:?}");
        }
        tokio::spawn(webhooks.clone().follow(changes, remote, cluster, shutdown));
        Some(webhooks)
    }

    /// Signs with `app`'s key and secret from now on (settings reloaded).
    pub fn set_credentials(&self, app: &AppCredentials) {
        self.signer.store(Arc::new(Signer::for_app(app)));
    }

    /// What the senders did: sent, failed, dropped, queued (for `/metrics`).
    pub fn status(&self) -> WebhookStatus {
        WebhookStatus {
            sent: self.totals.sent.load(Ordering::Relaxed),
            failed: self.totals.failed.load(Ordering::Relaxed),
            dropped: self.totals.dropped.load(Ordering::Relaxed)
                + self.changes_dropped.load(Ordering::Relaxed),
        }
    }

    /// A client sent `event` on `channel`; `user_id` on presence channels.
    pub fn client_event(
        &self,
        channel: &str,
        event: &str,
        data: &Value,
        socket: SocketId,
        user_id: Option<&str>,
    ) {
        let data = match data {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        };
        self.send(WebhookEvent::ClientEvent {
            channel: channel.to_owned(),
            event: event.to_owned(),
            data,
            socket_id: socket.to_string(),
            user_id: user_id.map(str::to_owned),
        });
    }

    fn send(&self, event: WebhookEvent) {
        // One copy, shared by every receiver's queue.
        let event = Arc::new(event);
        for receiver in &self.receivers {
            receiver.offer(&event, &self.totals);
        }
    }

    /// Turns the hub's changes (and other nodes' counts) into events.
    async fn follow(
        self: Arc<Self>,
        mut changes: mpsc::Receiver<ChannelChange>,
        mut remote: Option<mpsc::UnboundedReceiver<String>>,
        cluster: Option<Arc<Cluster>>,
        shutdown: CancellationToken,
    ) {
        let mut tracker = Tracker::default();
        let mut tick = tokio::time::interval(TICK);
        let remote_count = |channel: &str| {
            cluster
                .as_ref()
                .map_or(0, |cluster| cluster.remote_count(channel))
        };
        // Cluster-wide facts are sent by one node only.
        let shared = |event: Option<WebhookEvent>| {
            if let Some(event) = event
                && cluster.as_ref().is_none_or(|cluster| cluster.is_leader())
            {
                self.send(event);
            }
        };
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                change = changes.recv() => match change {
                    None => return,
                    Some(ChannelChange::Count { channel, count }) => {
                        tracker.set_local(&channel, count);
                        if let Some(cluster) = &cluster {
                            cluster.share_count(&channel, count);
                        }
                        let total = count + remote_count(&channel);
                        shared(tracker.counted(&channel, total, Instant::now()));
                    }
                    Some(ChannelChange::Member { channel, user_id, joined }) => {
                        shared(tracker.member(&channel, &user_id, joined, Instant::now()));
                    }
                    Some(ChannelChange::CacheMiss { channel }) => {
                        self.send(WebhookEvent::CacheMiss { channel });
                    }
                },
                Some(channel) = next_remote(&mut remote) => {
                    let total = tracker.local(&channel) + remote_count(&channel);
                    shared(tracker.counted(&channel, total, Instant::now()));
                }
                _ = tick.tick() => {
                    for event in tracker.due(Instant::now(), remote_count) {
                        shared(Some(event));
                    }
                }
            }
        }
    }
}

async fn next_remote(remote: &mut Option<mpsc::UnboundedReceiver<String>>) -> Option<String> {
    match remote {
        Some(receiver) => receiver.recv().await,
        None => std::future::pending().await,
    }
}
