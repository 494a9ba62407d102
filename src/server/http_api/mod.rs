//! The signed HTTP API the forum's PHP side (pusher-php-server) and other
//! server SDKs call: routing, body limits and request authentication. The
//! endpoints themselves live in [`events`], [`channels`] and [`users`].

mod channels;
mod events;
mod users;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::RETRY_AFTER;
use hyper::{Method, Request, Response, StatusCode};
use percent_encoding::percent_decode_str;
use serde_json::Value;

use super::context::ServerContext;
use super::response::{self, Body};
use crate::protocol::signature::{
    RequestAuthError, SignedQuery, constant_time_eq, verify_body, verify_query,
};
use crate::throttle::Throttle;

/// Requests refused for their clock are logged once a minute at most (the
/// app key is public: anyone can send a stale timestamp).
static CLOCK_REFUSALS: Throttle = Throttle::new(std::time::Duration::from_secs(60));

/// An API failure: the status and a message that tells the caller what to fix.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
}

/// A request that passed authentication, with what the endpoints need.
pub struct ApiRequest {
    pub params: Vec<(String, String)>,
    pub body: bytes::Bytes,
}

impl ApiRequest {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The endpoint a path names.
enum Route {
    Events,
    BatchEvents,
    Channels,
    Channel(String),
    ChannelUsers(String),
    TerminateUser(String),
}

impl Route {
    /// The endpoint's name in metrics.
    fn name(&self) -> &'static str {
        match self {
            Self::Events => "events",
            Self::BatchEvents => "batch_events",
            Self::Channels => "channels",
            Self::Channel(_) => "channel",
            Self::ChannelUsers(_) => "channel_users",
            Self::TerminateUser(_) => "terminate_connections",
        }
    }
}

fn decode(segment: &str) -> String {
    percent_decode_str(segment).decode_utf8_lossy().into_owned()
}

/// Splits the path into the app id (when in the path) and the route.
fn parse_route(method: &Method, path: &str) -> Result<(Option<String>, Route), ApiError> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let not_found = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no API endpoint {method} {path}"),
        )
    };
    let (app_id, rest) = match segments.as_slice() {
        ["apps", app_id, rest @ ..] => (Some(decode(app_id)), rest),
        ["users", ..] => (None, &segments[..]),
        _ => return Err(not_found()),
    };
    let route = match (method, rest) {
        (&Method::POST, ["events"]) => Route::Events,
        (&Method::POST, ["batch_events"]) => Route::BatchEvents,
        (&Method::GET, ["channels"]) => Route::Channels,
        (&Method::GET, ["channels", name]) => Route::Channel(decode(name)),
        (&Method::GET, ["channels", name, "users"]) => Route::ChannelUsers(decode(name)),
        (&Method::POST, ["users", user, "terminate_connections"]) => {
            Route::TerminateUser(decode(user))
        }
        _ => return Err(not_found()),
    };
    Ok((app_id, route))
}

pub async fn handle(ctx: Arc<ServerContext>, request: Request<Incoming>) -> Response<Body> {
    let parsed = parse_route(request.method(), request.uri().path());
    let endpoint = parsed.as_ref().map_or("unknown", |(_, route)| route.name());
    let outcome = match parsed {
        Ok((app_id, route)) => authenticate_and_run(&ctx, request, app_id, route).await,
        Err(error) => Err(error),
    };
    let response = match outcome {
        Ok(value) => response::json(StatusCode::OK, &value),
        Err(error) => {
            tracing::debug!(
                "HTTP API request refused with {}: {}",
                error.status,
                error.message
            );
            response::error(error.status, error.message)
        }
    };
    ctx.telemetry
        .api_request(endpoint, response.status().as_u16());
    if response.status() == StatusCode::TOO_MANY_REQUESTS {
        return response::with_header(response, RETRY_AFTER, "1");
    }
    response
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

async fn read_body(request: Request<Incoming>, limit: usize) -> Result<bytes::Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body is larger than {limit} bytes (max_request_body_bytes)"),
        )
    };
    let declared = request
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > limit) {
        return Err(too_large());
    }
    match Limited::new(request.into_body(), limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Err(error) => Err(ApiError::bad_request(format!(
            "could not read the request body: {error}"
        ))),
    }
}

async fn authenticate_and_run(
    ctx: &ServerContext,
    request: Request<Incoming>,
    app_id: Option<String>,
    route: Route,
) -> Result<Value, ApiError> {
    let method = request.method().clone();
    let raw_path = request.uri().path().to_owned();
    let settings = ctx.settings();
    let app = &settings.app;
    if let Some(app_id) = &app_id
        && app_id != &app.id
    {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no app with id {app_id}"),
        ));
    }
    let params: Vec<(String, String)> = request
        .uri()
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let auth_key = params
        .iter()
        .find(|(k, _)| k == "auth_key")
        .map(|(_, v)| v.as_str())
        .ok_or_else(|| {
            ApiError::new(StatusCode::UNAUTHORIZED, "missing query parameter auth_key")
        })?;
    if !constant_time_eq(auth_key, &app.key) {
        return Err(match app_id {
            Some(id) => ApiError::new(
                StatusCode::UNAUTHORIZED,
                format!("auth_key does not belong to app {id}"),
            ),
            None => ApiError::new(StatusCode::NOT_FOUND, "no app with this auth_key"),
        });
    }
    let decoded_path = decode(&raw_path);
    let mut paths = vec![raw_path.clone()];
    if decoded_path != raw_path {
        paths.push(decoded_path);
    }
    let unauthorized = |e: crate::protocol::signature::RequestAuthError| {
        ApiError::new(StatusCode::UNAUTHORIZED, e.to_string())
    };
    // Everything the query can prove is checked before the body is read: a
    // request without the secret never gets to hold a body in memory.
    let now_unix = unix_now();
    let query = SignedQuery {
        method: method.as_str(),
        paths: &paths,
        params: &params,
        now_unix,
    };
    verify_across_rotation(ctx, &query, &app.secret)
        .await
        .map_err(|error| {
        if let RequestAuthError::TimestampExpired { skew } = error
            && let Some(held_back) = CLOCK_REFUSALS.ready()
        {
            let theirs = params
                .iter()
                .find(|(name, _)| name == "auth_timestamp")
                .map_or("?", |(_, value)| value.as_str());
            tracing::warn!(
                "Refused an HTTP API request for its clock: auth_timestamp {theirs}, this server's clock {now_unix}, {skew} s apart; the forum's events are lost until both clocks agree (timedatectl, on both machines) ({held_back} more since the last such line)"
            );
        }
        unauthorized(error)
    })?;
    let body = read_body(request, settings.limits.max_request_body_bytes).await?;
    verify_body(&params, &body).map_err(unauthorized)?;

    // Counted after authentication: the key is public, so unsigned requests
    // must not be able to use up the forum's budget.
    let limit = settings.limits.api_requests_per_second;
    let allowed = ctx
        .api_rate
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .try_take(limit);
    if !allowed {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "more than {limit} API requests in one second for key {}; retry in a second (api_requests_per_second)",
                app.key
            ),
        ));
    }

    let api = ApiRequest { params, body };
    match route {
        Route::Events => events::trigger(ctx, &api),
        Route::BatchEvents => events::trigger_batch(ctx, &api),
        Route::Channels => channels::list(ctx, &api).await,
        Route::Channel(name) => channels::show(ctx, &api, &name).await,
        Route::ChannelUsers(name) => channels::users(ctx, &name),
        Route::TerminateUser(user) => users::terminate(ctx, &user),
    }
}

/// Verifies `query` with the secret in force; where the secret follows
/// config.php, a wrong signature is tried again with the one found there
/// after a look asked for now (the forum rotated its database password).
async fn verify_across_rotation(
    ctx: &ServerContext,
    query: &SignedQuery<'_>,
    secret: &crate::config::Secret,
) -> Result<(), RequestAuthError> {
    let first = match verify_query(query, secret.expose()) {
        Err(error @ RequestAuthError::BadSignature { .. }) => error,
        done => return done,
    };
    let Some(watch) = ctx.secret_watch.get() else {
        return Err(first);
    };
    watch.look_now().await;
    let now = ctx.settings().app.secret.clone();
    if now.expose() != secret.expose() && verify_query(query, now.expose()).is_ok() {
        return Ok(());
    }
    Err(first)
}

/// Publishes one event given as the API's JSON body, for callers that are
/// already authenticated another way (the dashboard's test form).
pub fn trigger_authenticated(ctx: &ServerContext, body: bytes::Bytes) -> Result<Value, ApiError> {
    events::trigger(
        ctx,
        &ApiRequest {
            params: Vec::new(),
            body,
        },
    )
}
