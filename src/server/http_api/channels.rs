//! `GET /apps/{id}/channels`, `/channels/{name}` and `/channels/{name}/users`.
//!
//! In a cluster, subscriber counts add the other nodes' (asked when the
//! request comes); presence members are already mirrored into this node's
//! hub, so user counts and user lists are cluster-wide as they stand.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Map, Value, json};

use super::events::parse_info;
use super::{ApiError, ApiRequest};
use crate::hub::ChannelSummary;
use crate::protocol::{ChannelKind, ChannelName};
use crate::server::context::ServerContext;

/// Subscriber counts of the other nodes' channels starting with `prefix`.
async fn remote_counts(ctx: &ServerContext, prefix: &str) -> HashMap<String, usize> {
    match &ctx.cluster {
        Some(cluster) => cluster.remote_counts(prefix).await,
        None => HashMap::new(),
    }
}

pub async fn list(ctx: &ServerContext, request: &ApiRequest) -> Result<Value, ApiError> {
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
    let mut summaries: BTreeMap<String, ChannelSummary> = ctx
        .hub
        .channels(prefix)
        .into_iter()
        .map(|summary| (summary.name.clone(), summary))
        .collect();
    for (name, count) in remote_counts(ctx, prefix).await {
        match summaries.get_mut(&name) {
            Some(summary) => summary.subscription_count += count,
            None => {
                let Ok(channel) = ChannelName::parse(&name, usize::MAX) else {
                    continue;
                };
                summaries.insert(
                    name.clone(),
                    ChannelSummary {
                        user_count: ctx.hub.channel_info(&channel).user_count,
                        name,
                        subscription_count: count,
                    },
                );
            }
        }
    }
    let mut channels = Map::new();
    for summary in summaries.into_values() {
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

pub async fn show(
    ctx: &ServerContext,
    request: &ApiRequest,
    name: &str,
) -> Result<Value, ApiError> {
    let channel = parse_channel(ctx, name)?;
    let mut info = ctx.hub.channel_info(&channel);
    if let Some(count) = remote_counts(ctx, channel.as_str())
        .await
        .get(channel.as_str())
    {
        info.subscription_count += count;
        info.occupied = info.subscription_count > 0;
    }
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
