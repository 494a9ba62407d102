//! flarum/realtime's typing indicators (Flarum 2). Browsers send
//! `client-typing` on a discussion's or a conversation's private channel; the
//! daemon does not relay what the client claims but says who is typing, as
//! the socket proved it (its `private-user={id}` subscription), and only to
//! those entitled to know:
//!
//! - discussion (`private-typing={id}`): `{displayName, discloseOnline, time}`.
//!   A typist who discloses their online status is named to the whole
//!   discussion. One who hides it is named only on
//!   `private-typingIdentified={id}` (whose subscribers the forum vetted for
//!   `user.viewLastSeenAt`), and everyone else gets an anonymous copy, the
//!   identified subscribers excepted so that they see one typist, not two.
//!   A socket that proved no user, or a user who cannot be looked up, is
//!   anonymous to everyone (the daemon leaves the identified subscribers out
//!   here too, so the most privileged viewers never see such a typist).
//! - conversation (`private-privateMessageTyping={id}`): `{userId}` to the
//!   conversation when the typist discloses, only to
//!   `private-privateMessageTypingIdentified={id}` when hiding, and to nobody
//!   when the typist is unproven (members know each other: in a two-person
//!   conversation "someone" would name them).

use std::sync::Arc;

use serde_json::{Value, json};

use super::RealtimeForum;
use crate::hub::Frame;
use crate::protocol::messages::outgoing;
use crate::protocol::{ChannelName, SocketId};
use crate::server::context::ServerContext;
use crate::telemetry::feed::{FeedItem, FeedKind};

const EVENT: &str = "client-typing";

/// Where a typing event goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypingIn {
    Discussion(u64),
    Conversation(u64),
}

/// The id in a flarum/realtime channel name such as `private-user=12`,
/// when `channel` is `prefix` followed by digits only.
pub fn channel_id(channel: &str, prefix: &str) -> Option<u64> {
    channel
        .strip_prefix(prefix)
        .filter(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|id| id.parse().ok())
}

/// The `time` a typing signal carries, passed on only as a number (Flarum's
/// JS sends a timestamp): anything else a client puts there (any JSON, up
/// to a message's size) would be relayed to everyone in the discussion.
pub fn client_time(data: &Value) -> Value {
    data.get("time")
        .filter(|time| time.is_number())
        .cloned()
        .unwrap_or(Value::Null)
}

/// Whether `channel` is one of the identified typing channels, where only
/// the server speaks: it names typists there from their own sockets.
pub fn is_identified_channel(channel: &str) -> bool {
    channel_id(channel, "private-typingIdentified=").is_some()
        || channel_id(channel, "private-privateMessageTypingIdentified=").is_some()
}

impl TypingIn {
    /// The typing target of a client event, if it is one.
    pub fn of(event: &str, channel: &str) -> Option<Self> {
        if event != EVENT {
            return None;
        }
        channel_id(channel, "private-typing=")
            .map(Self::Discussion)
            .or_else(|| {
                channel_id(channel, "private-privateMessageTyping=").map(Self::Conversation)
            })
    }

    fn channels(self) -> (String, String) {
        match self {
            Self::Discussion(id) => (
                format!("private-typing={id}"),
                format!("private-typingIdentified={id}"),
            ),
            Self::Conversation(id) => (
                format!("private-privateMessageTyping={id}"),
                format!("private-privateMessageTypingIdentified={id}"),
            ),
        }
    }
}

/// One relay: who sent it, as whom, and the client's `time`.
pub struct Typed {
    pub sender: SocketId,
    pub user: Option<u64>,
    pub target: TypingIn,
    pub data: Value,
}

/// Relays one typing event (looks the typist up first, so it runs as a task).
pub async fn relay(ctx: Arc<ServerContext>, forum: Arc<RealtimeForum>, typed: Typed) {
    let identity = match typed.user {
        Some(user) => forum.identities.of(user).await,
        None => None,
    };
    let (open, identified) = typed.target.channels();
    let identified_sockets = ctx.hub.subscriber_ids(&identified);
    let send = |channel: &str, data: Value, except: &[SocketId]| {
        let Ok(name) = ChannelName::parse(channel, usize::MAX) else {
            return;
        };
        let frame = outgoing::channel_event(EVENT, channel, &data, None);
        ctx.publish_except(
            &name,
            Frame::from(frame),
            except,
            FeedItem::new(FeedKind::ClientEvent)
                .socket(typed.sender)
                .channel(channel)
                .event(EVENT)
                .data(&data),
        );
    };
    let sender = [typed.sender];
    match typed.target {
        TypingIn::Discussion(_) => {
            let time = client_time(&typed.data);
            let named = |name: &str, disclose: bool| json!({"displayName": name, "discloseOnline": disclose, "time": time});
            match identity {
                Some(who) if who.disclose_online => {
                    send(&open, named(&who.display_name, true), &sender);
                }
                hidden_or_unknown => {
                    // Those told the name on the identified channel are left
                    // out of the anonymous copy, so that they see one typist.
                    // (The daemon leaves them out even when it told them
                    // nothing, so they never see an unproven typist.)
                    let mut except = vec![typed.sender];
                    if let Some(who) = &hidden_or_unknown
                        && !identified_sockets.is_empty()
                    {
                        send(&identified, named(&who.display_name, false), &sender);
                        except.extend(identified_sockets);
                    }
                    let anonymous =
                        json!({"displayName": Value::Null, "discloseOnline": false, "time": time});
                    send(&open, anonymous, &except);
                }
            }
        }
        TypingIn::Conversation(_) => {
            let (Some(user), Some(who)) = (typed.user, identity) else {
                return;
            };
            let data = json!({"userId": user});
            if who.disclose_online {
                send(&open, data, &sender);
            } else if !identified_sockets.is_empty() {
                send(&identified, data, &sender);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{TypingIn, client_time, is_identified_channel};
    use serde_json::json;

    #[test]
    fn only_a_numeric_time_is_passed_on() {
        assert_eq!(
            client_time(&json!({"time": 1733400000000u64})),
            json!(1733400000000u64)
        );
        assert_eq!(client_time(&json!({"time": {"any": "json"}})), json!(null));
        assert_eq!(client_time(&json!({"time": "x".repeat(10)})), json!(null));
        assert_eq!(client_time(&json!({})), json!(null));
    }

    #[test]
    fn typing_channels_are_recognised() {
        assert_eq!(
            TypingIn::of("client-typing", "private-typing=42"),
            Some(TypingIn::Discussion(42))
        );
        assert_eq!(
            TypingIn::of("client-typing", "private-privateMessageTyping=7"),
            Some(TypingIn::Conversation(7))
        );
        assert_eq!(TypingIn::of("client-other", "private-typing=42"), None);
        assert_eq!(TypingIn::of("client-typing", "private-typing=4a"), None);
        assert_eq!(
            TypingIn::of("client-typing", "private-typingIdentified=4"),
            None
        );
        assert!(is_identified_channel("private-typingIdentified=4"));
        assert!(is_identified_channel(
            "private-privateMessageTypingIdentified=9"
        ));
        assert!(!is_identified_channel("private-typing=4"));
    }
}
