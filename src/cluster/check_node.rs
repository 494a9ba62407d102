//! `flarum-ws check --live` standing in for another node of the cluster.
//!
//! A browser connected to one node gets the events triggered on the
//! others only if that node hears the bus, and the forum's events reach the
//! others only if the node its API call reached publishes them. Without the
//! other nodes' addresses, check plays one: it listens on the bus and
//! publishes on it exactly as a node does (the same connections, channels
//! and commands), so both directions are shown with the Redis the nodes
//! really use.

use std::time::Duration;

use super::bus::{CHECK_CHANNEL_PREFIX, Envelope, Message};
use super::link::{Listener, Publisher};
use super::outbox::Batch;
use super::redis_client::{self, COMMAND_TIMEOUT};
use super::sharded::Heard;
use super::{ClusterConfig, channels};

/// Check's place on the bus.
pub struct CheckNode {
    config: ClusterConfig,
    listener: Listener,
    publisher: Publisher,
    /// Where it publishes: the bus, or the first lane of a Redis Cluster.
    channel: String,
}

impl CheckNode {
    /// Connects to the bus as a node does; the error is the admin's to fix.
    pub async fn join(config: &ClusterConfig) -> Result<Self, String> {
        let target = redis_client::target(config)?;
        let connected = async {
            let listener = Listener::subscribe(&target, config).await?;
            let publisher = Publisher::connect(&target).await?;
            Ok::<_, redis::RedisError>((listener, publisher))
        };
        let (listener, publisher) = match tokio::time::timeout(COMMAND_TIMEOUT, connected).await {
            Ok(Ok(joined)) => joined,
            Ok(Err(error)) => return Err(redis_client::explain(&error, config)),
            Err(_) => {
                return Err(format!(
                    "Redis at {}: no answer within {} s",
                    redis_client::describe(&config.redis_url),
                    COMMAND_TIMEOUT.as_secs()
                ));
            }
        };
        let channel = if target.is_cluster() {
            channels::lane(&config.prefix, 0)
        } else {
            channels::single(&config.prefix)
        };
        Ok(Self {
            config: config.clone(),
            listener,
            publisher,
            channel,
        })
    }

    /// Publishes `frame` for the subscribers of `channel` (a check channel)
    /// on every node.
    pub async fn send_event(&mut self, channel: &str, frame: String) -> Result<(), String> {
        debug_assert!(channel.starts_with(CHECK_CHANNEL_PREFIX));
        let envelope = Envelope {
            node: "check".into(),
            seq: None,
            replay: false,
            message: Message::CheckEvent {
                channel: channel.to_owned(),
                frame,
            },
        };
        let text = serde_json::to_string(&envelope).map_err(|error| error.to_string())?;
        let batch = Batch::Other(vec![text]);
        match tokio::time::timeout(
            COMMAND_TIMEOUT,
            self.publisher.publish(&self.channel, &batch),
        )
        .await
        {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(redis_client::explain(&error, &self.config)),
            Err(_) => Err(format!(
                "Redis did not take the publish within {} s",
                COMMAND_TIMEOUT.as_secs()
            )),
        }
    }

    /// Waits up to `within` for a node to publish an event for `channel`;
    /// the node that did, if one did.
    pub async fn heard_event_for(&mut self, channel: &str, within: Duration) -> Option<String> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let heard = tokio::time::timeout_at(deadline, self.listener.next()).await;
            let Ok(Heard::Message(payload)) = heard else {
                return None;
            };
            let Ok(envelope) = serde_json::from_slice::<Envelope>(&payload) else {
                continue;
            };
            if let Message::Event {
                channel: published, ..
            } = &envelope.message
                && published == channel
            {
                return Some(envelope.node);
            }
        }
    }
}
