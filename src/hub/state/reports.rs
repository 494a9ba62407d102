//! What the HTTP API, the dashboard and the metrics read of the hub.

use std::time::Duration;

use serde_json::Value;

use super::Hub;
use crate::protocol::{ChannelKind, ChannelName, SocketId};

/// What the HTTP API reports about one channel.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelInfo {
    pub occupied: bool,
    pub subscription_count: usize,
    /// Presence channels only.
    pub user_count: Option<usize>,
    /// The cached event frame and its remaining lifetime (cache channels).
    pub cache: Option<(Value, Duration)>,
}

/// Sizes of the hub, for metrics and the dashboard.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HubTotals {
    pub channels: usize,
    pub subscriptions: usize,
    pub presence_members: usize,
}

/// One occupied channel in the channel list.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelSummary {
    pub name: String,
    pub subscription_count: usize,
    pub user_count: Option<usize>,
}

impl Hub {
    /// Whether `channel` has a subscriber on this node.
    pub fn has_local_subscribers(&self, channel: &str) -> bool {
        self.read()
            .channels
            .get(channel)
            .is_some_and(|c| !c.subscribers.is_empty())
    }

    pub fn is_subscribed(&self, socket: SocketId, channel: &str) -> bool {
        self.read()
            .channels
            .get(channel)
            .is_some_and(|c| c.subscribers.contains_key(&socket))
    }

    /// The sockets subscribed to `channel` on this node.
    pub fn subscriber_ids(&self, channel: &str) -> Vec<SocketId> {
        self.read()
            .channels
            .get(channel)
            .map(|entry| entry.subscribers.keys().copied().collect())
            .unwrap_or_default()
    }

    /// The presence member key `socket` joined `channel` as.
    pub fn member_key(&self, socket: SocketId, channel: &str) -> Option<String> {
        self.read()
            .channels
            .get(channel)?
            .subscribers
            .get(&socket)?
            .member_key
            .clone()
    }

    /// Occupied channels whose name starts with `prefix`.
    pub fn channels(&self, prefix: &str) -> Vec<ChannelSummary> {
        let state = self.read();
        let mut list: Vec<ChannelSummary> = state
            .channels
            .iter()
            .filter(|(name, c)| name.as_str().starts_with(prefix) && !c.subscribers.is_empty())
            .map(|(name, c)| ChannelSummary {
                name: name.to_string(),
                subscription_count: c.subscribers.len(),
                user_count: (name.kind() == ChannelKind::Presence).then(|| c.members.len()),
            })
            .collect();
        list.sort_by(|a, b| a.name.cmp(&b.name));
        list
    }

    /// What the HTTP API says of one channel: occupied, subscribers, users.
    pub fn channel_info(&self, channel: &ChannelName) -> ChannelInfo {
        let state = self.read();
        let entry = state.channels.get(channel.as_str());
        let subscription_count = entry.map_or(0, |c| c.subscribers.len());
        let cache = state.cache.get(channel.as_str()).and_then(|cached| {
            let left = state
                .limits
                .cache_ttl
                .checked_sub(cached.stored.elapsed())?;
            let frame: Value = serde_json::from_str(cached.frame.as_str()).ok()?;
            Some((frame, left))
        });
        ChannelInfo {
            occupied: subscription_count > 0,
            subscription_count,
            user_count: (channel.kind() == ChannelKind::Presence)
                .then(|| entry.map_or(0, |c| c.members.len())),
            cache,
        }
    }

    /// The ids of a presence channel's members.
    pub fn presence_user_ids(&self, channel: &str) -> Vec<Value> {
        self.read()
            .channels
            .get(channel)
            .map(|c| c.members.iter().map(|m| m.user_id.clone()).collect())
            .unwrap_or_default()
    }

    /// Channels, subscriptions and presence members, counted now.
    pub fn totals(&self) -> HubTotals {
        let state = self.read();
        let mut totals = HubTotals::default();
        for channel in state.channels.values() {
            if !channel.subscribers.is_empty() {
                totals.channels += 1;
            }
            totals.subscriptions += channel.subscribers.len();
            totals.presence_members += channel.members.len();
        }
        totals
    }
}
