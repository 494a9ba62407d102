//! What nodes say to each other on the Redis pub/sub channel, as JSON. Every
//! message carries the sending node's id; a node ignores its own.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The channels `flarum-ws check --live` subscribes its browser to.
pub const CHECK_CHANNEL_PREFIX: &str = "flarum-ws-check-";

/// A presence membership of one socket, as mirrored between nodes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberEntry {
    pub channel: String,
    pub socket: String,
    pub user_id: Value,
    pub key: String,
    pub user_info: Value,
}

/// What one node tells the others on the Redis channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Message {
    /// An event to fan out to the node's local subscribers.
    Event {
        channel: String,
        frame: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        except: Option<String>,
        #[serde(default)]
        cache: bool,
    },
    Joined(MemberEntry),
    Left {
        channel: String,
        socket: String,
    },
    SignedIn {
        socket: String,
        user_id: String,
    },
    SignedOut {
        socket: String,
        user_id: String,
    },
    /// Close every socket signed in as `user_id` (4009).
    Terminate {
        user_id: String,
    },
    /// "I am alive"; nodes silent for longer than the expiry are dropped.
    Heartbeat,
    /// A node (re)joined: everyone answers with a [`Message::Snapshot`].
    Hello,
    /// Everything the sender's own clients contribute to shared state;
    /// replaces what the receivers knew of the sender.
    Snapshot {
        members: Vec<MemberEntry>,
        signins: Vec<(String, String)>,
        /// Subscriber counts per channel, sent while webhooks need them.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        counts: Option<Vec<(String, usize)>>,
        /// A large snapshot goes in parts `0..parts` (see `snapshot.rs`);
        /// 0 and 1 both mean whole.
        #[serde(default, skip_serializing_if = "is_zero")]
        part: u32,
        #[serde(default, skip_serializing_if = "is_zero")]
        parts: u32,
    },
    /// The sender's subscriber count of `channel` changed (webhooks).
    Count {
        channel: String,
        count: usize,
    },
    /// "How many subscribers do your channels starting with `prefix` have?"
    Query {
        id: u64,
        prefix: String,
    },
    /// The answer to query `id` of node `to`.
    Counts {
        to: String,
        id: u64,
        channels: Vec<(String, usize)>,
    },
    /// `flarum-ws check` showing that its Redis user may publish here;
    /// nodes ignore it.
    Probe,
    /// An event from `flarum-ws check --live` standing in for another node:
    /// delivered to this node's subscribers of `channel` if it is a check
    /// channel ([`CHECK_CHANNEL_PREFIX`]); nothing is kept of the sender.
    CheckEvent {
        channel: String,
        frame: String,
    },
    /// "Node `to`: publish your events from number `from` on again" (the
    /// sender missed some while its link to Redis was down).
    Resend {
        to: String,
        from: u64,
    },
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// A [`Message`] with the node that sent it, as it crosses Redis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub node: String,
    /// The number of an event or termination among the sender's (1, 2,
    /// 3…, in the order published): receivers deliver each once and ask
    /// again for those that did not arrive. Other messages have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// Published before and again now, because a node missed it: a node
    /// that had not heard from the sender before ignores it (it is older
    /// than that node's acquaintance).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub replay: bool,
    #[serde(flatten)]
    pub message: Message,
}

/// `text` (an [`Envelope`] as published) marked as a replay.
pub fn as_replay(text: &str) -> Option<String> {
    let mut envelope: Envelope = serde_json::from_str(text).ok()?;
    envelope.replay = true;
    serde_json::to_string(&envelope).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_as_tagged_json() {
        let envelope = Envelope {
            node: "n1".into(),
            seq: Some(3),
            replay: false,
            message: Message::Event {
                channel: "public".into(),
                frame: r#"{"event":"x"}"#.into(),
                except: None,
                cache: false,
            },
        };
        let text = serde_json::to_string(&envelope).unwrap();
        assert!(text.contains(r#""type":"event""#), "{text}");
        assert!(!text.contains("replay"), "{text}");
        assert_eq!(serde_json::from_str::<Envelope>(&text).unwrap(), envelope);
        let again: Envelope = serde_json::from_str(&as_replay(&text).unwrap()).unwrap();
        assert!(again.replay);
        assert_eq!(again.message, envelope.message);
    }
}
