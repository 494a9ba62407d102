//! `POST /apps/{id}/users/{user}/terminate_connections` (and the
//! `/users/{user}/terminate_connections` form the Python SDK sends).

use serde_json::{Value, json};

use super::ApiError;
use crate::server::context::ServerContext;

pub fn terminate(ctx: &ServerContext, user_id: &str) -> Result<Value, ApiError> {
    if user_id.is_empty() {
        return Err(ApiError::bad_request("user id is empty"));
    }
    let closed = ctx.hub.terminate_user(user_id);
    if let Some(cluster) = &ctx.cluster {
        cluster.terminate_user(user_id);
    }
    if let Some(relay) = &*ctx.relay.load() {
        relay.terminate_user(user_id);
    }
    tracing::info!("Terminating {closed} connection(s) of user {user_id} on the app's request");
    Ok(json!({}))
}
