//! `GET /apps/{id}/channels`, `/channels/{name}` and `/channels/{name}/users`.

use serde_json::{Map, Value, json};

use super::events::parse_info;
use super::{ApiError, ApiRequest};
use crate::protocol::{ChannelKind, ChannelName};
use crate::server::context::ServerContext;

pub fn list(ctx: &ServerContext, request: &ApiRequest) -> Result<Value, ApiError> {
    let prefix = request.param("filter_by_prefix").unwrap_or("");
    let info = parse_info(request.param("info"));
    for attribute in &info {
        match attribute.as_str() {
            "user_count" if !prefix.starts_with("presence-") => {
                return Err(ApiError::bad_request(
                    "info=user_count needs filter_by_prefix=presence- (only presence channels have users)",
                ));
            }
            "user_count" | "subscription_count" => {}
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown info attribute {other:?}"
                )));
            }
        }
    }
    let mut channels = Map::new();
    for summary in ctx.hub.channels(prefix) {
        let mut attributes = Map::new();
        for attribute in &info {
            match attribute.as_str() {
                "user_count" => {
                    attributes.insert("user_count".into(), json!(summary.user_count.unwrap_or(0)))
                }
                _ => attributes.insert(
                    "subscription_count".into(),
                    json!(summary.subscription_count),
                ),
            };
        }
        channels.insert(summary.name, Value::Object(attributes));
    }
    Ok(json!({ "channels": channels }))
}

fn parse_channel(ctx: &ServerContext, name: &str) -> Result<ChannelName, ApiError> {
    ChannelName::parse(name, ctx.settings().limits.max_channel_name_length)
        .map_err(|e| ApiError::bad_request(format!("invalid channel name: {e}")))
}

pub fn show(ctx: &ServerContext, request: &ApiRequest, name: &str) -> Result<Value, ApiError> {
    let channel = parse_channel(ctx, name)?;
    let info = ctx.hub.channel_info(&channel);
    let mut answer = Map::new();
    answer.insert("occupied".into(), json!(info.occupied));
    for attribute in parse_info(request.param("info")) {
        match attribute.as_str() {
            "user_count" => {
                let count = info.user_count.ok_or_else(|| {
                    ApiError::bad_request("info=user_count is only available for presence channels")
                })?;
                answer.insert("user_count".into(), json!(count));
            }
            "subscription_count" => {
                answer.insert("subscription_count".into(), json!(info.subscription_count));
            }
            "cache" => {
                if let Some((frame, ttl)) = &info.cache {
                    answer.insert(
                        "cache".into(),
                        json!({ "event": frame["event"], "data": frame["data"], "ttl": ttl.as_secs() }),
                    );
                }
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown info attribute {other:?}"
                )));
            }
        }
    }
    Ok(Value::Object(answer))
}

pub fn users(ctx: &ServerContext, name: &str) -> Result<Value, ApiError> {
    let channel = parse_channel(ctx, name)?;
    if channel.kind() != ChannelKind::Presence {
        return Err(ApiError::bad_request("only presence channels have users"));
    }
    let users: Vec<Value> = ctx
        .hub
        .presence_user_ids(channel.as_str())
        .into_iter()
        .map(|id| match id {
            Value::String(s) => json!({ "id": s }),
            other => json!({ "id": other.to_string() }),
        })
        .collect();
    Ok(json!({ "users": users }))
}
