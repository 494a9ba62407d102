//! Who may see the operator pages (/metrics, /dashboard): whoever presents
//! the admin token or the app secret, as `Authorization: Bearer …` (for
//! Prometheus and scripts) or the dashboard's cookie (for browsers). Both
//! comparisons are constant time; the cookie always carries the admin token,
//! never the app secret.

use hyper::HeaderMap;
use hyper::header::{AUTHORIZATION, COOKIE};

use super::context::ServerContext;
use crate::protocol::signature::constant_time_eq;

/// Name of the dashboard's session cookie.
pub const COOKIE_NAME: &str = "flarum_ws_admin";

/// Whether `candidate` is the admin token or the app secret.
pub fn is_admin_credential(ctx: &ServerContext, candidate: &str) -> bool {
    let token = ctx.admin_token();
    let token_matches = constant_time_eq(candidate, token.expose());
    let secret_matches = constant_time_eq(candidate, ctx.settings().app.secret.expose());
    !candidate.is_empty() && (token_matches | secret_matches)
}

/// Whether the request carries an admin credential in its headers.
pub fn is_authorized(ctx: &ServerContext, headers: &HeaderMap) -> bool {
    bearer(headers)
        .into_iter()
        .chain(cookie(headers))
        .any(|candidate| is_admin_credential(ctx, candidate))
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

fn cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == COOKIE_NAME).then_some(value)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    #[test]
    fn finds_bearer_tokens_and_the_cookie() {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer abc"));
        headers.insert(
            COOKIE,
            HeaderValue::from_static("theme=dark; flarum_ws_admin=xyz"),
        );
        assert_eq!(bearer(&headers), Some("abc"));
        assert_eq!(cookie(&headers), Some("xyz"));
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer(&headers), None);
    }
}
