//! One webhook event as Pusher writes it: `{"name": "...", "channel": ...}`
//! plus the fields of its kind. User ids are strings, as Pusher sends them.

use serde::Serialize;
use serde_json::Value;

use crate::config::WebhookKind;

/// One webhook event, as Pusher sends it in a webhook's `events` list.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "name", rename_all = "snake_case")]
pub enum WebhookEvent {
    ChannelOccupied {
        channel: String,
    },
    ChannelVacated {
        channel: String,
    },
    MemberAdded {
        channel: String,
        user_id: String,
    },
    MemberRemoved {
        channel: String,
        user_id: String,
    },
    ClientEvent {
        channel: String,
        event: String,
        /// The event's data as text (a JSON string stays as it is).
        data: String,
        socket_id: String,
        /// Presence channels only.
        #[serde(skip_serializing_if = "Option::is_none")]
        user_id: Option<String>,
    },
    CacheMiss {
        channel: String,
    },
    SubscriptionCount {
        channel: String,
        subscription_count: usize,
    },
}

impl WebhookEvent {
    pub fn kind(&self) -> WebhookKind {
        match self {
            Self::ChannelOccupied { .. } => WebhookKind::ChannelOccupied,
            Self::ChannelVacated { .. } => WebhookKind::ChannelVacated,
            Self::MemberAdded { .. } => WebhookKind::MemberAdded,
            Self::MemberRemoved { .. } => WebhookKind::MemberRemoved,
            Self::ClientEvent { .. } => WebhookKind::ClientEvent,
            Self::CacheMiss { .. } => WebhookKind::CacheMiss,
            Self::SubscriptionCount { .. } => WebhookKind::SubscriptionCount,
        }
    }

    /// About the bytes the event takes in a request (and in memory): what
    /// a receiver's queue is bounded by.
    pub fn size(&self) -> usize {
        let text = match self {
            Self::ClientEvent {
                event,
                data,
                socket_id,
                user_id,
                ..
            } => {
                event.len() + data.len() + socket_id.len() + user_id.as_ref().map_or(0, String::len)
            }
            Self::MemberAdded { user_id, .. } | Self::MemberRemoved { user_id, .. } => {
                user_id.len()
            }
            _ => 0,
        };
        64 + self.channel().len() + text
    }

    pub fn channel(&self) -> &str {
        match self {
            Self::ChannelOccupied { channel }
            | Self::ChannelVacated { channel }
            | Self::MemberAdded { channel, .. }
            | Self::MemberRemoved { channel, .. }
            | Self::ClientEvent { channel, .. }
            | Self::CacheMiss { channel }
            | Self::SubscriptionCount { channel, .. } => channel,
        }
    }
}

/// A presence user id as the text Pusher sends (`"7"` for `7` and `"7"`).
pub fn user_id_text(user_id: &Value) -> String {
    match user_id {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialises_as_pusher_names_them() {
        let event = WebhookEvent::ClientEvent {
            channel: "private-a".into(),
            event: "client-x".into(),
            data: r#"{"n":1}"#.into(),
            socket_id: "1.2".into(),
            user_id: None,
        };
        assert_eq!(
            serde_json::to_value(&event).unwrap(),
            serde_json::json!({"name": "client_event", "channel": "private-a", "event": "client-x",
                "data": "{\"n\":1}", "socket_id": "1.2"})
        );
        assert_eq!(user_id_text(&serde_json::json!(7)), "7");
        assert_eq!(user_id_text(&serde_json::json!("7")), "7");
    }
}
