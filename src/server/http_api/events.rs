//! `POST /apps/{id}/events` and `POST /apps/{id}/batch_events`.
//!
//! pusher-php-server ≥ 7.1 sends `"channel"` for a single channel and
//! `"channels"` for several; both are accepted (reading only `channels`
//! silently drops every single-channel event of a forum).

use hyper::StatusCode;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{ApiError, ApiRequest};
use crate::hub::Frame;
use crate::protocol::messages::outgoing;
use crate::protocol::{ChannelKind, ChannelName, SocketId};
use crate::server::context::ServerContext;
use crate::telemetry::feed::{FeedItem, FeedKind};

#[derive(Debug, Deserialize)]
struct EventBody {
    name: Option<String>,
    data: Option<Value>,
    channel: Option<String>,
    channels: Option<Vec<String>>,
    socket_id: Option<String>,
    info: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchBody {
    batch: Vec<EventBody>,
}

/// An event that passed validation and is ready to publish.
struct ValidEvent {
    name: String,
    data: Value,
    channels: Vec<ChannelName>,
    except: Option<SocketId>,
    info: Vec<String>,
}

fn parse_json<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

fn validate(ctx: &ServerContext, body: EventBody) -> Result<ValidEvent, ApiError> {
    let settings = ctx.settings();
    let limits = &settings.limits;
    let name = body
        .name
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::bad_request("\"name\" is required"))?;
    if name.len() > limits.max_event_name_length {
        return Err(ApiError::bad_request(format!(
            "event name is {} characters long; the limit is {}",
            name.len(),
            limits.max_event_name_length
        )));
    }
    let data = match body.data {
        Some(Value::String(text)) => text,
        Some(Value::Null) | None => return Err(ApiError::bad_request("\"data\" is required")),
        Some(other) => other.to_string(),
    };
    if data.len() > limits.max_event_data_bytes {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "event data is {} bytes; the limit is {} (max_event_data_bytes)",
                data.len(),
                limits.max_event_data_bytes
            ),
        ));
    }
    let names = match (body.channel, body.channels) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "send either \"channel\" or \"channels\", not both",
            ));
        }
        (Some(one), None) => vec![one],
        (None, Some(many)) => many,
        (None, None) => {
            return Err(ApiError::bad_request(
                "\"channel\" or \"channels\" is required",
            ));
        }
    };
    if names.is_empty() {
        return Err(ApiError::bad_request("\"channels\" is empty"));
    }
    if names.len() > limits.max_channels_per_event {
        return Err(ApiError::bad_request(format!(
            "event is sent to {} channels; the limit is {}",
            names.len(),
            limits.max_channels_per_event
        )));
    }
    let channels = names
        .iter()
        .map(|n| {
            ChannelName::parse(n, limits.max_channel_name_length).map_err(|e| {
                let shown: String = n.chars().take(210).collect();
                ApiError::bad_request(format!("invalid channel {shown:?}: {e}"))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let except = match body.socket_id {
        Some(text) if !text.is_empty() => Some(
            text.parse::<SocketId>()
                .map_err(|e| ApiError::bad_request(e.to_string()))?,
        ),
        _ => None,
    };
    let info = parse_info(body.info.as_deref());
    for attribute in &info {
        match attribute.as_str() {
            "user_count" => {
                if channels.iter().any(|c| c.kind() != ChannelKind::Presence) {
                    return Err(ApiError::bad_request(
                        "info=user_count is only available for presence channels",
                    ));
                }
            }
            "subscription_count" => {}
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown info attribute {other:?}"
                )));
            }
        }
    }
    Ok(ValidEvent {
        name,
        data: Value::String(data),
        channels,
        except,
        info,
    })
}

/// Splits `info=a,b` into attribute names.
pub(super) fn parse_info(info: Option<&str>) -> Vec<String> {
    info.map(|i| {
        i.split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(str::to_owned)
            .collect()
    })
    .unwrap_or_default()
}

/// Publishes to every channel; returns the requested attributes per channel.
fn publish(ctx: &ServerContext, event: &ValidEvent) -> Map<String, Value> {
    let mut attributes = Map::new();
    for channel in &event.channels {
        let frame = outgoing::channel_event(&event.name, channel.as_str(), &event.data, None);
        ctx.publish(
            channel,
            Frame::from(frame),
            event.except,
            channel.class().cached,
            FeedItem::new(FeedKind::ApiEvent)
                .channel(channel.as_str())
                .event(&event.name)
                .data(&event.data),
        );
        if ctx.settings().verbose {
            tracing::info!("API event {} published on {channel}", event.name);
        }
        if !event.info.is_empty() {
            let info = ctx.hub.channel_info(channel);
            let mut values = Map::new();
            for attribute in &event.info {
                match attribute.as_str() {
                    "user_count" => {
                        values.insert("user_count".into(), json!(info.user_count.unwrap_or(0)))
                    }
                    _ => values.insert("subscription_count".into(), json!(info.subscription_count)),
                };
            }
            attributes.insert(channel.to_string(), Value::Object(values));
        }
    }
    attributes
}

pub fn trigger(ctx: &ServerContext, request: &ApiRequest) -> Result<Value, ApiError> {
    let event = validate(ctx, parse_json(&request.body)?)?;
    let attributes = publish(ctx, &event);
    ctx.telemetry.api_events(1);
    Ok(if event.info.is_empty() {
        json!({})
    } else {
        json!({ "channels": attributes })
    })
}

pub fn trigger_batch(ctx: &ServerContext, request: &ApiRequest) -> Result<Value, ApiError> {
    let batch: BatchBody = parse_json(&request.body)?;
    let max = ctx.settings().limits.max_batch_events;
    if batch.batch.len() > max {
        return Err(ApiError::bad_request(format!(
            "batch has {} events; the limit is {max}",
            batch.batch.len()
        )));
    }
    // Validate everything first: a bad event refuses the whole batch rather
    // than half-sending it.
    let events = batch
        .batch
        .into_iter()
        .enumerate()
        .map(|(index, body)| {
            validate(ctx, body)
                .map_err(|e| ApiError::new(e.status, format!("batch[{index}]: {}", e.message)))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let any_info = events.iter().any(|e| !e.info.is_empty());
    ctx.telemetry.api_events(events.len() as u64);
    let results: Vec<Value> = events
        .iter()
        .map(|event| {
            let attributes = publish(ctx, event);
            attributes
                .into_iter()
                .next()
                .map(|(_, v)| v)
                .unwrap_or_else(|| json!({}))
        })
        .collect();
    Ok(if any_info {
        json!({ "batch": results })
    } else {
        json!({})
    })
}
