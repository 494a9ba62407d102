//! The live dashboard at `/dashboard`: connections, channels with their
//! subscribers, presence members, a feed of recent activity and a form to
//! send a test event. One HTML page with its script and styles built into
//! the binary (no CDN), polling two JSON endpoints.
//!
//! Access: `/dashboard?token=…` with the admin token (printed at startup
//! unless `admin_token` is set) or the app secret sets an HttpOnly,
//! SameSite=Strict cookie holding the admin token and redirects to a clean
//! URL. Everything else under `/dashboard` needs that cookie or a bearer
//! token. The test form posts JSON, which a cross-site form cannot send.

use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, HeaderValue, LOCATION, SET_COOKIE,
    X_FRAME_OPTIONS,
};
use hyper::{HeaderMap, Method, Request, Response, StatusCode};
use serde_json::{Value, json};

use super::admin::{self, COOKIE_NAME};
use super::admission::client_ip;
use super::context::ServerContext;
use super::http_api;
use super::response::{self, Body};
use crate::protocol::ChannelName;

const PAGE: &str = include_str!("page.html");
const LOGIN: &str = include_str!("login.html");

/// Largest sign-in form body.
const MAX_LOGIN_BODY: usize = 4 * 1024;

/// Largest test event body the form may post.
const MAX_TRIGGER_BODY: usize = 64 * 1024;

pub async fn handle(
    ctx: &ServerContext,
    peer: SocketAddr,
    request: Request<Incoming>,
) -> Response<Body> {
    let answer = route(ctx, peer, request).await;
    // No page of the dashboard may be shown inside another site's frame.
    let answer = response::with_header(answer, X_FRAME_OPTIONS, "DENY");
    if answer.headers().contains_key(CONTENT_SECURITY_POLICY) {
        answer
    } else {
        response::with_header(answer, CONTENT_SECURITY_POLICY, "frame-ancestors 'none'")
    }
}

async fn route(
    ctx: &ServerContext,
    peer: SocketAddr,
    request: Request<Incoming>,
) -> Response<Body> {
    let settings = ctx.settings();
    let ip = client_ip(
        peer,
        request.headers(),
        &settings.trusted_proxies,
        settings.client_address_header,
    );
    let path = request.uri().path().trim_end_matches('/').to_owned();
    let method = request.method().clone();
    if path == "/dashboard" && method == Method::GET {
        let token = query_param(&request, "token");
        return entry(ctx, ip, token, request.headers());
    }
    if path == "/dashboard" && method == Method::POST {
        // The sign-in form: `token=…`, form-encoded.
        let token = match Limited::new(request.into_body(), MAX_LOGIN_BODY)
            .collect()
            .await
        {
            Ok(body) => form_urlencoded::parse(&body.to_bytes())
                .find(|(key, _)| key == "token")
                .map(|(_, value)| value.into_owned()),
            Err(_) => None,
        };
        return entry(ctx, ip, Some(token.unwrap_or_default()), &HeaderMap::new());
    }
    if !admin::is_authorized(ctx, request.headers()) {
        return response::error(
            StatusCode::UNAUTHORIZED,
            "open /dashboard?token=<admin token> first (the token is printed when the server starts)",
        );
    }
    let answer = match (&method, path.as_str()) {
        (&Method::GET, "/dashboard/state") => response::json(StatusCode::OK, &state(ctx)),
        (&Method::GET, "/dashboard/history") => {
            let day = query_param(&request, "range").as_deref() == Some("day");
            let view = serde_json::to_value(ctx.telemetry.history_view(day)).unwrap_or_default();
            response::json(StatusCode::OK, &view)
        }
        (&Method::GET, "/dashboard/feed") => {
            let after = query_param(&request, "after")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            response::json(
                StatusCode::OK,
                &json!({ "items": ctx.telemetry.feed_since(after) }),
            )
        }
        (&Method::POST, "/dashboard/trigger") => trigger(ctx, request).await,
        _ => response::error(
            StatusCode::NOT_FOUND,
            format!("no dashboard route {method} {path}"),
        ),
    };
    response::with_header(answer, CACHE_CONTROL, "no-store")
}

/// The page for a browser with the cookie; otherwise the login form, or the
/// cookie and a redirect when the URL carries a valid token.
fn entry(
    ctx: &ServerContext,
    ip: IpAddr,
    token: Option<String>,
    headers: &HeaderMap,
) -> Response<Body> {
    if let Some(token) = token {
        if !ctx.wrong_tokens.may_try(ip) {
            return response::error(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "too many wrong tokens from {ip}; try again in {} s",
                    super::guesses::WINDOW.as_secs()
                ),
            );
        }
        if !admin::is_admin_credential(ctx, &token) {
            ctx.wrong_tokens.record(ip);
            return login_page(
                "That token is not right. Use the admin token printed when flarum-ws started, or the app secret.",
            );
        }
        let mut redirect = response::text(StatusCode::SEE_OTHER, "");
        let secure = if ctx.tls.is_some() || ctx.settings().reverse_proxy {
            "; Secure"
        } else {
            ""
        };
        let cookie = format!(
            "{COOKIE_NAME}={}; Path=/dashboard; HttpOnly; SameSite=Strict{secure}",
            ctx.admin_token().expose()
        );
        let headers = redirect.headers_mut();
        headers.insert(LOCATION, HeaderValue::from_static("/dashboard"));
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            headers.insert(SET_COOKIE, value);
        }
        return redirect;
    }
    if !admin::is_authorized(ctx, headers) {
        return login_page("");
    }
    let page = response::typed(StatusCode::OK, "text/html; charset=utf-8", PAGE);
    response::with_header(
        page,
        CONTENT_SECURITY_POLICY,
        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:; form-action 'self'; frame-ancestors 'none'",
    )
}

fn login_page(problem: &str) -> Response<Body> {
    let escaped = problem
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    let html = LOGIN.replace("{{problem}}", &escaped);
    response::typed(StatusCode::UNAUTHORIZED, "text/html; charset=utf-8", html)
}

fn query_param(request: &Request<Incoming>, name: &str) -> Option<String> {
    form_urlencoded::parse(request.uri().query()?.as_bytes())
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

fn state(ctx: &ServerContext) -> Value {
    let totals = ctx.hub.totals();
    let channels: Vec<Value> = ctx
        .hub
        .channels("")
        .into_iter()
        .map(|channel| {
            let members = channel
                .user_count
                .map(|_| ctx.hub.presence_user_ids(&channel.name));
            json!({
                "name": channel.name,
                "subscription_count": channel.subscription_count,
                "user_count": channel.user_count,
                "members": members,
            })
        })
        .collect();
    let settings = ctx.settings();
    let cluster = ctx.cluster.as_ref().map(|cluster| {
        let status = cluster.status();
        json!({
            "node": cluster.node_id(),
            "redis_up": status.redis_up,
            "nodes": status.other_nodes + 1,
        })
    });
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "app_id": settings.app.id,
        "uptime_seconds": ctx.started.elapsed().as_secs(),
        "connections": ctx.telemetry.connections(),
        "subscriptions": totals.subscriptions,
        "presence_members": totals.presence_members,
        "traffic": ctx.telemetry.traffic(),
        "channels": channels,
        "cluster": cluster,
    })
}

async fn trigger(ctx: &ServerContext, request: Request<Incoming>) -> Response<Body> {
    let is_json = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !is_json {
        return response::error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the test event as application/json",
        );
    }
    let body: Bytes = match Limited::new(request.into_body(), MAX_TRIGGER_BODY)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            return response::error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("test events are limited to {MAX_TRIGGER_BODY} bytes"),
            );
        }
    };
    let channel = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("channel").and_then(Value::as_str).map(str::to_owned));
    match http_api::trigger_authenticated(ctx, body) {
        Ok(_) => {
            let delivered_to = channel
                .and_then(|c| ChannelName::parse(&c, usize::MAX).ok())
                .map_or(0, |c| ctx.hub.channel_info(&c).subscription_count);
            tracing::info!("Dashboard test event sent");
            response::json(StatusCode::OK, &json!({ "subscribers": delivered_to }))
        }
        Err(error) => response::error(error.status, error.message),
    }
}
