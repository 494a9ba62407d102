//! HTTP responses: JSON, text and HTML bodies with the right status and
//! content type.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use hyper::{Response, StatusCode};
use serde_json::{Value, json};

pub type Body = Full<Bytes>;

pub fn json(status: StatusCode, value: &Value) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(value.to_string())));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// `{"error": message}` with `status`.
pub fn error(status: StatusCode, message: impl Into<String>) -> Response<Body> {
    json(
        status,
        &json!({ "error": message.into(), "status": status.as_u16() }),
    )
}

/// `response` with the header `name: value` added.
pub fn with_header(
    mut response: Response<Body>,
    name: impl Into<HeaderName>,
    value: &'static str,
) -> Response<Body> {
    response
        .headers_mut()
        .insert(name.into(), HeaderValue::from_static(value));
    response
}

pub fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    typed(status, "text/plain; charset=utf-8", body)
}

/// `body` with `status` and `content_type`.
pub fn typed(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
