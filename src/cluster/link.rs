//! The two Redis connections of a node: one publishing the bus messages in
//! the order they were queued, one subscribed to the bus (to one channel on
//! one server, to every lane on a Redis Cluster: see [`super::channels`]).
//! Both reconnect with back-off (a second at most, so that nodes come back
//! together) for as long as the server runs; while Redis is away the node
//! serves its own clients and its events for the others wait in the outbox.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::outbox::Batch;
use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio_util::sync::CancellationToken;

use super::redis_client::{self, COMMAND_TIMEOUT, Target};
use super::sharded::{self, Heard};
use super::{Cluster, ClusterConfig, EXPIRY, channels};

const FIRST_RETRY: Duration = Duration::from_millis(200);
const LAST_RETRY: Duration = Duration::from_secs(1);

/// Where `role` connects; `None` (logged) when it cannot be built, which
/// startup has already ruled out.
fn open_target(config: &ClusterConfig, role: &str) -> Option<Target> {
    redis_client::target(config)
        .inspect_err(|error| tracing::error!("Redis {role} not started: {error}"))
        .ok()
}

/// Waits out one back-off step; false when the server is stopping.
async fn back_off(delay: &mut Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => return false,
        _ = tokio::time::sleep(*delay) => {}
    }
    *delay = (*delay * 2).min(LAST_RETRY);
    true
}

/// The publishing connection: to one server, or to a Redis Cluster.
pub(super) enum Publisher {
    Server(ConnectionManager),
    Cluster(redis::cluster_async::ClusterConnection),
}

impl Publisher {
    pub(super) async fn connect(target: &Target) -> redis::RedisResult<Self> {
        if target.is_cluster() {
            return sharded::connect_publisher(target)
                .await
                .map(Publisher::Cluster);
        }
        connect_server(target).await.map(Publisher::Server)
    }

    /// Publishes `batch` on `channel` in one round trip (a pipeline).
    pub(super) async fn publish(&mut self, channel: &str, batch: &Batch) -> redis::RedisResult<()> {
        let command = match self {
            Publisher::Server(_) => "PUBLISH",
            Publisher::Cluster(_) => "SPUBLISH",
        };
        let pipeline = pipeline_of(command, channel, batch);
        match self {
            Publisher::Server(manager) => pipeline.query_async(manager).await,
            Publisher::Cluster(connection) => pipeline.query_async(connection).await,
        }
    }
}

async fn connect_server(target: &Target) -> redis::RedisResult<ConnectionManager> {
    // Asking the sentinels has no timeout of its own.
    let client = tokio::time::timeout(COMMAND_TIMEOUT, target.client())
        .await
        .map_err(|_| {
            redis::RedisError::from(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "no sentinel named a master in time",
            ))
        })??;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(COMMAND_TIMEOUT))
        .set_response_timeout(Some(COMMAND_TIMEOUT))
        .set_number_of_retries(1)
        .set_max_delay(LAST_RETRY);
    client.get_connection_manager_with_config(config).await
}

/// Publishes what waits in the outbox, a batch per round trip (a Redis
/// pipeline), events before anything else; within a lane, other nodes see
/// messages in the order this node produced them. Events that cannot be
/// published stay in the log and are offered again after the back-off;
/// state that cannot be is replaced by a snapshot once publishing works.
pub async fn publish_loop(
    cluster: Arc<Cluster>,
    config: ClusterConfig,
    shutdown: CancellationToken,
) {
    let Some(target) = open_target(&config, "publisher") else {
        return;
    };
    let channel = if target.is_cluster() {
        channels::lane(&config.prefix, channels::lane_of(cluster.node_id()))
    } else {
        channels::single(&config.prefix)
    };
    let mut connection: Option<Publisher> = None;
    let mut delay = FIRST_RETRY;
    let mut failing = false;
    loop {
        let count_message =
            |channel, count| cluster.envelope(super::bus::Message::Count { channel, count });
        let batch = tokio::select! {
            _ = shutdown.cancelled() => return,
            batch = cluster.outbox.next_batch(count_message) => batch,
        };
        if batch.len() == 0 {
            continue;
        }
        let published = match connection.as_mut() {
            Some(publisher) => publisher.publish(&channel, &batch).await,
            None => match Publisher::connect(&target).await {
                Ok(mut publisher) => {
                    let published = publisher.publish(&channel, &batch).await;
                    connection = Some(publisher);
                    published
                }
                Err(error) => Err(error),
            },
        }
        .map_err(|error| redis_client::explain(&error, &config));
        match published {
            Ok(()) => {
                cluster
                    .published
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                if let Batch::Events { first, last, .. } = batch {
                    cluster.outbox.published(first, last);
                }
                delay = FIRST_RETRY;
                if std::mem::take(&mut failing) {
                    let waiting = cluster.outbox.status().waiting;
                    tracing::info!(
                        "Publishing to Redis works again; {waiting} held event(s) still to go out"
                    );
                }
                if cluster.outbox.take_resync() {
                    cluster.resync();
                }
            }
            Err(error) => {
                if !matches!(batch, Batch::Events { .. }) {
                    cluster.outbox.owe_resync();
                }
                // The next attempt connects afresh: with Sentinel, to
                // whichever server is master by then.
                connection = None;
                if !std::mem::replace(&mut failing, true) {
                    tracing::warn!(
                        "cannot publish to Redis ({error}); events for other nodes are held (up to {} s and {} MiB) until it answers",
                        super::REPLAY_WINDOW.as_secs(),
                        super::MAX_EVENT_LOG_BYTES >> 20
                    );
                }
                if !back_off(&mut delay, &shutdown).await {
                    return;
                }
            }
        }
    }
}

/// A pipeline of one `command` (PUBLISH or SPUBLISH) on `channel` for each
/// message of `batch`.
fn pipeline_of(command: &str, channel: &str, batch: &Batch) -> redis::Pipeline {
    let mut pipeline = redis::pipe();
    match batch {
        Batch::Events {
            first,
            fresh_from,
            texts,
            ..
        } => {
            for (seq, text) in (*first..).zip(texts) {
                let replay = (seq < *fresh_from)
                    .then(|| super::bus::as_replay(text))
                    .flatten();
                let payload = replay.as_deref().unwrap_or(text);
                pipeline.cmd(command).arg(channel).arg(payload).ignore();
            }
        }
        Batch::Other(texts) => {
            for text in texts {
                pipeline.cmd(command).arg(channel).arg(text).ignore();
            }
        }
    }
    pipeline
}

/// The listening connection: to one server, or to every lane of a Redis
/// Cluster.
pub(super) enum Listener {
    Server(std::pin::Pin<Box<dyn futures_util::Stream<Item = redis::Msg> + Send>>),
    Cluster(sharded::Listener),
}

impl Listener {
    pub(super) async fn subscribe(
        target: &Target,
        config: &ClusterConfig,
    ) -> redis::RedisResult<Self> {
        if target.is_cluster() {
            let lanes = channels::lanes(&config.prefix);
            return sharded::Listener::subscribe(target, &lanes)
                .await
                .map(Listener::Cluster);
        }
        let mut pubsub = target.client().await?.get_async_pubsub().await?;
        pubsub.subscribe(channels::single(&config.prefix)).await?;
        Ok(Listener::Server(Box::pin(pubsub.into_on_message())))
    }

    pub(super) async fn next(&mut self) -> Heard {
        match self {
            Listener::Server(messages) => match messages.next().await {
                Some(message) => Heard::Message(message.get_payload_bytes().to_vec()),
                None => Heard::Lost("the connection ended"),
            },
            Listener::Cluster(listener) => listener.next().await,
        }
    }
}

/// Listens to the bus, reconnecting with back-off. A connection that
/// delivers nothing (not even this node's own heartbeats) for [`EXPIRY`] is
/// considered dead and replaced.
pub async fn subscribe_loop(
    cluster: Arc<Cluster>,
    config: ClusterConfig,
    shutdown: CancellationToken,
) {
    let Some(target) = open_target(&config, "subscriber") else {
        return;
    };
    let mut delay = FIRST_RETRY;
    let mut reported = false;
    loop {
        let subscribed = Listener::subscribe(&target, &config);
        let mut listener = match tokio::time::timeout(COMMAND_TIMEOUT, subscribed).await {
            Ok(Ok(listener)) => listener,
            outcome => {
                if !reported {
                    let reason = match outcome {
                        Ok(Err(error)) => redis_client::explain(&error, &config),
                        _ => format!(
                            "Redis at {}: no answer within {} s",
                            redis_client::describe(&config.redis_url),
                            COMMAND_TIMEOUT.as_secs()
                        ),
                    };
                    tracing::warn!(
                        "cannot subscribe to the cluster's channel ({reason}); serving local clients only, retrying"
                    );
                    reported = true;
                }
                if !back_off(&mut delay, &shutdown).await {
                    return;
                }
                continue;
            }
        };
        tracing::info!("Connected to Redis; synchronising with the other nodes");
        reported = false;
        delay = FIRST_RETRY;
        cluster.connected();
        loop {
            let next = tokio::select! {
                _ = shutdown.cancelled() => return,
                next = tokio::time::timeout(EXPIRY, listener.next()) => next,
            };
            match next {
                Ok(Heard::Message(payload)) => cluster.receive(&payload),
                Ok(Heard::Lost(why)) => {
                    tracing::warn!(
                        "Lost the connection to Redis ({why}); serving local clients only, reconnecting"
                    );
                    break;
                }
                Err(_) => {
                    tracing::warn!(
                        "Redis delivered nothing for {} s; reconnecting",
                        EXPIRY.as_secs()
                    );
                    break;
                }
            }
        }
        cluster.disconnected();
    }
}
