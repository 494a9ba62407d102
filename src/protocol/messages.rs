//! Parsing what clients send and building what the server sends.
//!
//! Clients (pusher-js) send `data` as an object; other clients send it as a
//! JSON-encoded string. Both are accepted. The server always sends the `data`
//! of `pusher:*` and `pusher_internal:*` frames as a string, as Pusher does.

use serde::Serialize;
use serde_json::{Map, Value, json};

/// A message received from a client, already checked for shape.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientMessage {
    Ping,
    Pong,
    Subscribe(SubscribeRequest),
    Unsubscribe {
        channel: String,
    },
    Signin {
        auth: String,
        user_data: String,
    },
    /// A `client-*` event to relay to the channel's other subscribers.
    ClientEvent {
        event: String,
        channel: String,
        data: Value,
    },
    /// A well-formed message with an event this server does not know.
    Unknown {
        event: String,
    },
}

/// `pusher:subscribe`'s data.
#[derive(Debug, Clone, PartialEq)]
pub struct SubscribeRequest {
    pub channel: String,
    pub auth: Option<String>,
    /// The exact string the forum signed (presence only).
    pub channel_data: Option<String>,
}

/// Why a client frame could not be understood; sent back in `pusher:error`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    #[error("message is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("message must be a JSON object with a string \"event\" field")]
    MissingEvent,
    #[error("{event}: {problem}")]
    InvalidField {
        event: String,
        problem: &'static str,
    },
}

fn invalid(event: &str, problem: &'static str) -> MessageError {
    MessageError::InvalidField {
        event: event.to_owned(),
        problem,
    }
}

/// Decodes `data` given as an object or as a JSON string holding an object.
fn data_object(event: &str, data: Option<Value>) -> Result<Map<String, Value>, MessageError> {
    match data {
        Some(Value::Object(map)) => Ok(map),
        Some(Value::String(text)) => match serde_json::from_str(&text) {
            Ok(Value::Object(map)) => Ok(map),
            _ => Err(invalid(
                event,
                "data must be an object (or a string holding one)",
            )),
        },
        _ => Err(invalid(
            event,
            "data must be an object (or a string holding one)",
        )),
    }
}

fn optional_string(
    map: &mut Map<String, Value>,
    field: &str,
    event: &str,
    problem: &'static str,
) -> Result<Option<String>, MessageError> {
    match map.remove(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(invalid(event, problem)),
    }
}

/// Parses one text frame from a client.
pub fn parse_client_message(text: &str) -> Result<ClientMessage, MessageError> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| MessageError::InvalidJson(e.to_string()))?;
    let Value::Object(mut message) = value else {
        return Err(MessageError::MissingEvent);
    };
    let Some(Value::String(event)) = message.remove("event") else {
        return Err(MessageError::MissingEvent);
    };
    let data = message.remove("data");
    match event.as_str() {
        "pusher:ping" => Ok(ClientMessage::Ping),
        "pusher:pong" => Ok(ClientMessage::Pong),
        "pusher:subscribe" => {
            let mut data = data_object(&event, data)?;
            let channel =
                optional_string(&mut data, "channel", &event, "channel must be a string")?
                    .ok_or_else(|| invalid(&event, "data.channel is required"))?;
            let auth = optional_string(&mut data, "auth", &event, "auth must be a string")?;
            let channel_data = optional_string(
                &mut data,
                "channel_data",
                &event,
                "channel_data must be the JSON string the auth endpoint signed",
            )?;
            Ok(ClientMessage::Subscribe(SubscribeRequest {
                channel,
                auth,
                channel_data,
            }))
        }
        "pusher:unsubscribe" => {
            let mut data = data_object(&event, data)?;
            let channel =
                optional_string(&mut data, "channel", &event, "channel must be a string")?
                    .ok_or_else(|| invalid(&event, "data.channel is required"))?;
            Ok(ClientMessage::Unsubscribe { channel })
        }
        "pusher:signin" => {
            let mut data = data_object(&event, data)?;
            let auth = optional_string(&mut data, "auth", &event, "auth must be a string")?
                .ok_or_else(|| invalid(&event, "data.auth is required"))?;
            let user_data = optional_string(
                &mut data,
                "user_data",
                &event,
                "user_data must be a JSON string",
            )?
            .ok_or_else(|| invalid(&event, "data.user_data is required"))?;
            Ok(ClientMessage::Signin { auth, user_data })
        }
        name if name.starts_with("client-") => {
            let Some(Value::String(channel)) = message.remove("channel") else {
                return Err(invalid(&event, "client events need a string \"channel\""));
            };
            Ok(ClientMessage::ClientEvent {
                event,
                channel,
                data: data.unwrap_or(Value::Null),
            })
        }
        _ => Ok(ClientMessage::Unknown { event }),
    }
}

/// `channel_data` of a presence subscription: who the member is.
#[derive(Debug, Clone, PartialEq)]
pub struct PresenceMember {
    /// The id as the forum sent it: a string, or a number that JSON numbers
    /// hold exactly; a number they would round (beyond 64-bit integers and
    /// doubles) is kept as a string of its exact digits.
    pub user_id: Value,
    /// The id's exact text (a string's content, a number's digits): the key
    /// members are counted by, so distinct ids never collide.
    pub key: String,
    pub user_info: Value,
}

/// Why presence `channel_data` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PresenceDataError {
    #[error("channel_data is required on presence channels")]
    Missing,
    #[error("channel_data must be a JSON object with a user_id")]
    Invalid,
    #[error("user_id must be a non-empty string or a number")]
    BadUserId,
    #[error("user_id is {len} characters long; the limit is {max}")]
    UserIdTooLong { len: usize, max: usize },
    #[error("user_info is {len} bytes; the limit is {max}")]
    UserInfoTooLarge { len: usize, max: usize },
}

/// Parses presence `channel_data` and applies the id and info size limits.
pub fn parse_presence_member(
    channel_data: Option<&str>,
    max_user_id_len: usize,
    max_user_info_bytes: usize,
) -> Result<PresenceMember, PresenceDataError> {
    /// The id is read as raw text: parsing it as a JSON number would round
    /// large ones, and two users would become one.
    #[derive(serde::Deserialize)]
    struct ChannelData<'a> {
        #[serde(borrow)]
        user_id: Option<&'a serde_json::value::RawValue>,
        #[serde(default)]
        user_info: Value,
    }
    let text = channel_data.ok_or(PresenceDataError::Missing)?;
    let Ok(data) = serde_json::from_str::<ChannelData>(text) else {
        return Err(PresenceDataError::Invalid);
    };
    let raw = data.user_id.ok_or(PresenceDataError::Invalid)?.get();
    let (user_id, key) = match serde_json::from_str::<Value>(raw) {
        Ok(Value::String(s)) if !s.is_empty() => (Value::String(s.clone()), s),
        Ok(Value::Number(n)) if n.to_string() == raw => (Value::Number(n), raw.to_owned()),
        Ok(Value::Number(_)) => (Value::String(raw.to_owned()), raw.to_owned()),
        _ => return Err(PresenceDataError::BadUserId),
    };
    let len = key.chars().count();
    if len > max_user_id_len {
        return Err(PresenceDataError::UserIdTooLong {
            len,
            max: max_user_id_len,
        });
    }
    let user_info = data.user_info;
    if !user_info.is_null() {
        let len = user_info.to_string().len();
        if len > max_user_info_bytes {
            return Err(PresenceDataError::UserInfoTooLarge {
                len,
                max: max_user_info_bytes,
            });
        }
    }
    Ok(PresenceMember {
        user_id,
        key,
        user_info,
    })
}

/// The signed-in user described by `pusher:signin`'s `user_data`.
#[derive(Debug, Clone, PartialEq)]
pub struct SigninUser {
    pub id: String,
    pub watchlist: Vec<String>,
}

/// Why `user_data` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigninDataError {
    #[error("user_data must be a JSON object")]
    Invalid,
    #[error("user_data.id must be a non-empty string")]
    BadId,
    #[error("user_data.watchlist must be an array of user id strings")]
    BadWatchlist,
}

/// Parses signin `user_data` (the limit on the watchlist is the caller's).
pub fn parse_signin_user(user_data: &str) -> Result<SigninUser, SigninDataError> {
    let Ok(Value::Object(mut data)) = serde_json::from_str::<Value>(user_data) else {
        return Err(SigninDataError::Invalid);
    };
    let id = match data.remove("id") {
        Some(Value::String(id)) if !id.is_empty() => id,
        _ => return Err(SigninDataError::BadId),
    };
    let watchlist = match data.remove("watchlist") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .into_iter()
            .map(|item| match item {
                Value::String(s) => Ok(s),
                Value::Number(n) => Ok(n.to_string()),
                _ => Err(SigninDataError::BadWatchlist),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(SigninDataError::BadWatchlist),
    };
    Ok(SigninUser { id, watchlist })
}

/// Builders for every frame the server sends.
pub mod outgoing {
    use super::*;

    /// A frame whose `data` is a JSON-encoded string.
    fn internal(event: &str, channel: Option<&str>, data: &Value) -> String {
        internal_serialized(event, channel, &data.to_string())
    }

    /// A frame whose `data` is the string `data_json` (Pusher's internal
    /// events carry their data as a JSON string).
    fn internal_serialized(event: &str, channel: Option<&str>, data_json: &str) -> String {
        #[derive(Serialize)]
        struct Frame<'a> {
            event: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            channel: Option<&'a str>,
            data: &'a str,
        }
        let frame = Frame {
            event,
            channel,
            data: data_json,
        };
        serde_json::to_string(&frame).expect("serializing strings cannot fail")
    }

    /// `pusher:connection_established`, the first frame a client gets.
    pub fn connection_established(socket_id: &str, activity_timeout_secs: u64) -> String {
        internal(
            "pusher:connection_established",
            None,
            &json!({ "socket_id": socket_id, "activity_timeout": activity_timeout_secs }),
        )
    }

    /// `pusher:error`; `code` is `None` for errors without a protocol code.
    pub fn error(code: Option<u16>, message: &str) -> String {
        internal(
            "pusher:error",
            None,
            &json!({ "code": code, "message": message }),
        )
    }

    pub fn ping() -> String {
        internal("pusher:ping", None, &json!({}))
    }

    pub fn pong() -> String {
        internal("pusher:pong", None, &json!({}))
    }

    pub fn subscription_succeeded(channel: &str, data: &Value) -> String {
        internal(
            "pusher_internal:subscription_succeeded",
            Some(channel),
            data,
        )
    }

    /// `subscription_succeeded` with data already serialized (the presence
    /// member list, built once and shared).
    pub fn subscription_succeeded_with(channel: &str, data_json: &str) -> String {
        internal_serialized(
            "pusher_internal:subscription_succeeded",
            Some(channel),
            data_json,
        )
    }

    pub fn subscription_error(channel: &str, kind: &str, message: &str, status: u16) -> String {
        internal(
            "pusher:subscription_error",
            Some(channel),
            &json!({ "type": kind, "error": message, "status": status }),
        )
    }

    pub fn member_added(channel: &str, user_id: &Value, user_info: &Value) -> String {
        internal(
            "pusher_internal:member_added",
            Some(channel),
            &json!({ "user_id": user_id, "user_info": user_info }),
        )
    }

    pub fn member_removed(channel: &str, user_id: &Value) -> String {
        internal(
            "pusher_internal:member_removed",
            Some(channel),
            &json!({ "user_id": user_id }),
        )
    }

    /// `pusher:cache_miss`: a cache channel has no event to replay.
    pub fn cache_miss(channel: &str) -> String {
        json!({ "event": "pusher:cache_miss", "channel": channel }).to_string()
    }

    /// `pusher:signin_success`, with the user data the client signed in with.
    pub fn signin_success(user_data: &str) -> String {
        internal(
            "pusher:signin_success",
            None,
            &json!({ "user_data": user_data }),
        )
    }

    /// `pusher_internal:watchlist_events` with one entry per non-empty group.
    pub fn watchlist_events(online: &[&str], offline: &[&str]) -> String {
        let mut events = Vec::new();
        if !online.is_empty() {
            events.push(json!({ "name": "online", "user_ids": online }));
        }
        if !offline.is_empty() {
            events.push(json!({ "name": "offline", "user_ids": offline }));
        }
        internal(
            "pusher_internal:watchlist_events",
            None,
            &json!({ "events": events }),
        )
    }

    /// An application event; `data` is relayed exactly as published.
    pub fn channel_event(
        event: &str,
        channel: &str,
        data: &Value,
        user_id: Option<&str>,
    ) -> String {
        #[derive(Serialize)]
        struct Event<'a> {
            event: &'a str,
            channel: &'a str,
            data: &'a Value,
            #[serde(skip_serializing_if = "Option::is_none")]
            user_id: Option<&'a str>,
        }
        serde_json::to_string(&Event {
            event,
            channel,
            data,
            user_id,
        })
        .expect("serializing a JSON value cannot fail")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_data_as_object_or_string() {
        let object = r#"{"event":"pusher:subscribe","data":{"channel":"a","auth":"k:s"}}"#;
        let string =
            r#"{"event":"pusher:subscribe","data":"{\"channel\":\"a\",\"auth\":\"k:s\"}"}"#;
        let expected = ClientMessage::Subscribe(SubscribeRequest {
            channel: "a".into(),
            auth: Some("k:s".into()),
            channel_data: None,
        });
        assert_eq!(parse_client_message(object).unwrap(), expected);
        assert_eq!(parse_client_message(string).unwrap(), expected);
    }

    #[test]
    fn rejects_wrong_shapes_with_a_reason() {
        assert!(matches!(
            parse_client_message("{"),
            Err(MessageError::InvalidJson(_))
        ));
        assert_eq!(parse_client_message("[]"), Err(MessageError::MissingEvent));
        assert_eq!(
            parse_client_message(r#"{"event":5}"#),
            Err(MessageError::MissingEvent)
        );
        assert!(
            parse_client_message(r#"{"event":"pusher:subscribe","data":{"channel":1}}"#).is_err()
        );
        assert!(parse_client_message(r#"{"event":"pusher:subscribe","data":7}"#).is_err());
        assert!(parse_client_message(r#"{"event":"client-x","data":{}}"#).is_err());
        assert_eq!(
            parse_client_message(r#"{"event":"whatever"}"#).unwrap(),
            ClientMessage::Unknown {
                event: "whatever".into()
            }
        );
    }

    #[test]
    fn presence_member_limits() {
        let m = parse_presence_member(Some(r#"{"user_id":10,"user_info":{"n":1}}"#), 128, 1024)
            .unwrap();
        assert_eq!(m.key, "10");
        assert_eq!(m.user_id, json!(10));
        assert_eq!(
            parse_presence_member(
                Some(&format!(r#"{{"user_id":"{}"}}"#, "x".repeat(129))),
                128,
                1024
            ),
            Err(PresenceDataError::UserIdTooLong { len: 129, max: 128 })
        );
        assert!(matches!(
            parse_presence_member(Some(r#"{"user_id":"a","user_info":"xxxxxxxxxx"}"#), 128, 5),
            Err(PresenceDataError::UserInfoTooLarge { .. })
        ));
        assert_eq!(
            parse_presence_member(None, 128, 5),
            Err(PresenceDataError::Missing)
        );
        assert_eq!(
            parse_presence_member(Some(r#"{"user_id":""}"#), 128, 5),
            Err(PresenceDataError::BadUserId)
        );
    }

    #[test]
    fn internal_frames_carry_string_data() {
        let frame: Value =
            serde_json::from_str(&outgoing::connection_established("1.2", 120)).unwrap();
        assert!(frame["data"].is_string());
        let inner: Value = serde_json::from_str(frame["data"].as_str().unwrap()).unwrap();
        assert_eq!(inner["socket_id"], "1.2");
    }

    #[test]
    fn large_numeric_user_ids_keep_every_digit_and_never_collide() {
        let member = |id: &str| {
            parse_presence_member(Some(&format!(r#"{{"user_id":{id}}}"#)), 128, 1024).unwrap()
        };
        let a = member("123456789012345678901234567890");
        let b = member("123456789012345678901234567891");
        assert_ne!(a.key, b.key);
        assert_eq!(a.key, "123456789012345678901234567890");
        assert_eq!(a.user_id, json!("123456789012345678901234567890"));
        // Ids JSON numbers hold exactly stay numbers, as the forum sent them.
        assert_eq!(member("42").user_id, json!(42));
        assert_eq!(member("42").key, "42");
        assert_eq!(member("\"7\"").user_id, json!("7"));
    }
}
