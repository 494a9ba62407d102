//! One HTTP/1.1 request over a [`Stream`], and signed API calls built on it.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;

use super::ProbeError;
use super::connect::{Target, connect};
use crate::protocol::signature::signed_query;

/// How long one probe request may take, connection included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Bytes of an answer's body kept; the rest is not read. What is kept only
/// ever goes into a message, and a webhook receiver (anyone's URL) must not
/// make the server hold a gigabyte reply.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Sends one request and returns the status and body.
pub async fn request(
    target: &Target,
    method: &str,
    path_and_query: &str,
    body: String,
) -> Result<(u16, String), ProbeError> {
    request_with_headers(target, method, path_and_query, body, &[]).await
}

/// [`request`] with extra headers (webhooks' signature headers).
pub async fn request_with_headers(
    target: &Target,
    method: &str,
    path_and_query: &str,
    body: String,
    headers: &[(&str, String)],
) -> Result<(u16, String), ProbeError> {
    let exchange = request_inner(target, method, path_and_query, body, headers);
    tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .map_err(|_| ProbeError::NoAnswer {
            address: target.address.clone(),
            port: target.port,
            seconds: REQUEST_TIMEOUT.as_secs(),
        })?
}

async fn request_inner(
    target: &Target,
    method: &str,
    path_and_query: &str,
    body: String,
    headers: &[(&str, String)],
) -> Result<(u16, String), ProbeError> {
    let stream = connect(target).await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| ProbeError::Http(format!("HTTP handshake failed: {e}")))?;
    tokio::spawn(connection);
    let mut request = Request::builder()
        .method(method)
        .uri(path_and_query)
        .header("host", format!("{}:{}", target.server_name, target.port))
        .header("content-type", "application/json");
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let request = request
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| ProbeError::Http(format!("cannot build the request: {e}")))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| ProbeError::Http(format!("request failed: {e}")))?;
    let status = response.status().as_u16();
    let mut body = response.into_body();
    let mut kept = Vec::new();
    while kept.len() < MAX_ANSWER_BYTES {
        let Some(frame) = body.frame().await else {
            break;
        };
        let frame =
            frame.map_err(|e| ProbeError::Http(format!("cannot read the response: {e}")))?;
        if let Some(data) = frame.data_ref() {
            let room = MAX_ANSWER_BYTES - kept.len();
            kept.extend_from_slice(&data[..data.len().min(room)]);
        }
    }
    // The rest is never read: dropping the body closes the connection.
    Ok((status, String::from_utf8_lossy(&kept).into_owned()))
}

/// Signs API requests with an app's credentials, as pusher-php-server does.
pub struct SignedClient {
    pub target: Target,
    pub app_id: String,
    pub key: String,
    pub secret: String,
}

impl SignedClient {
    /// POSTs `body` to `/apps/{id}{path}` with a signed query string.
    pub async fn post(&self, path: &str, body: String) -> Result<(u16, String), ProbeError> {
        let full_path = format!("/apps/{}{path}", self.app_id);
        let timestamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let query = signed_query(
            "POST",
            &full_path,
            &self.key,
            &self.secret,
            body.as_bytes(),
            timestamp,
            &[],
        );
        request(&self.target, "POST", &format!("{full_path}?{query}"), body).await
    }
}
