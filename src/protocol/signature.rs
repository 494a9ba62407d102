//! HMAC-SHA256 signatures: channel authorization, user signin and signed HTTP
//! API requests.
//!
//! Every comparison goes through [`constant_time_eq`] so that response timing
//! says nothing about how much of a forged signature was right.

use hmac::{Hmac, KeyInit, Mac};
use md5::{Digest, Md5};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// How far a request's `auth_timestamp` may be from the server's clock.
pub const TIMESTAMP_WINDOW_SECS: i64 = 600;

/// Lower-case hex HMAC-SHA256 of `payload` keyed by `secret`.
pub fn hmac_hex(secret: &str, payload: &str) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC accepts keys of any length");
    mac.update(payload.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Lower-case hex MD5 of a request body, as sent in `body_md5`.
pub fn body_md5(body: &[u8]) -> String {
    hex::encode(Md5::digest(body))
}

/// Compares two strings in time that depends only on their lengths.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// Why a websocket-side authorization (`auth` field) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no auth signature was sent; {kind} channels need one from the forum's auth endpoint")]
    Missing { kind: &'static str },
    #[error("auth must look like \"<app key>:<hex signature>\"")]
    Malformed,
    #[error("auth was signed for another app key")]
    WrongKey,
    #[error("invalid signature: expected HMAC-SHA256 of \"{signed}\" with the app secret")]
    BadSignature { signed: String },
}

/// Checks `auth` = `key:hex(hmac(secret, string_to_sign))`.
pub fn verify_auth(
    app_key: &str,
    secret: &str,
    string_to_sign: &str,
    auth: &str,
) -> Result<(), AuthError> {
    let (key, signature) = auth.split_once(':').ok_or(AuthError::Malformed)?;
    if !constant_time_eq(key, app_key) {
        return Err(AuthError::WrongKey);
    }
    let expected = hmac_hex(secret, string_to_sign);
    if constant_time_eq(&signature.to_ascii_lowercase(), &expected) {
        Ok(())
    } else {
        Err(AuthError::BadSignature {
            signed: string_to_sign.to_owned(),
        })
    }
}

/// The string a private or encrypted channel authorization signs.
pub fn channel_string_to_sign(
    socket_id: &str,
    channel: &str,
    channel_data: Option<&str>,
) -> String {
    match channel_data {
        Some(data) => format!("{socket_id}:{channel}:{data}"),
        None => format!("{socket_id}:{channel}"),
    }
}

/// The string a user signin signs.
pub fn signin_string_to_sign(socket_id: &str, user_data: &str) -> String {
    format!("{socket_id}::user::{user_data}")
}

/// Why a signed HTTP API request was refused (all answered with 401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestAuthError {
    #[error("missing query parameter {0}")]
    MissingParam(&'static str),
    #[error("auth_version must be 1.0")]
    BadVersion,
    #[error("auth_timestamp is not a number")]
    BadTimestamp,
    #[error(
        "auth_timestamp is {skew} s away from the server's clock (limit {TIMESTAMP_WINDOW_SECS} s); check both clocks"
    )]
    TimestampExpired { skew: i64 },
    #[error("body_md5 is required for a request with a body")]
    MissingBodyMd5,
    #[error("body_md5 does not match the body")]
    BodyMd5Mismatch,
    #[error("invalid signature: expected HMAC-SHA256 of \"{signed}\" with the app secret")]
    BadSignature { signed: String },
}

/// The `METHOD\nPATH\nQUERY` string of a request, QUERY being every
/// parameter but `auth_signature` with lower-cased keys, sorted, unescaped.
pub fn request_string_to_sign(method: &str, path: &str, params: &[(String, String)]) -> String {
    let mut pairs: Vec<(String, &str)> = params
        .iter()
        .filter(|(k, _)| !k.eq_ignore_ascii_case("auth_signature"))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.as_str()))
        .collect();
    pairs.sort();
    let query = pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    format!("{method}\n{path}\n{query}")
}

/// The query string of a signed API request, built as the Pusher server
/// SDKs build it: `auth_key`, `auth_timestamp`, `auth_version`, `body_md5`
/// (when there is a body), the caller's `extra` parameters, and
/// `auth_signature` over all of them.
pub fn signed_query(
    method: &str,
    path: &str,
    key: &str,
    secret: &str,
    body: &[u8],
    timestamp: i64,
    extra: &[(&str, &str)],
) -> String {
    let mut params: Vec<(String, String)> = vec![
        ("auth_key".into(), key.into()),
        ("auth_timestamp".into(), timestamp.to_string()),
        ("auth_version".into(), "1.0".into()),
    ];
    if !body.is_empty() {
        params.push(("body_md5".into(), body_md5(body)));
    }
    params.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let signature = hmac_hex(secret, &request_string_to_sign(method, path, &params));
    params.push(("auth_signature".into(), signature));
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish()
}

/// What a signed request presented in its request line: everything the
/// signature covers. The body is covered only through `body_md5`, so a
/// server can refuse a forged request before reading its body.
pub struct SignedQuery<'a> {
    pub method: &'a str,
    /// Candidate paths to sign: the raw path, then its percent-decoded form
    /// when that differs (SDKs disagree on whether they sign either).
    pub paths: &'a [String],
    pub params: &'a [(String, String)],
    pub now_unix: i64,
}

/// A signed request with its body.
pub struct SignedRequest<'a> {
    pub method: &'a str,
    /// As in [`SignedQuery::paths`].
    pub paths: &'a [String],
    pub params: &'a [(String, String)],
    pub body: &'a [u8],
    pub now_unix: i64,
}

fn param<'a>(params: &'a [(String, String)], name: &'static str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Verifies version, timestamp and signature of an API request whose
/// `auth_key` has already been matched to the app owning `secret`, from the
/// query alone. [`verify_body`] then checks the body it read.
pub fn verify_query(request: &SignedQuery<'_>, secret: &str) -> Result<(), RequestAuthError> {
    let params = request.params;
    let signature =
        param(params, "auth_signature").ok_or(RequestAuthError::MissingParam("auth_signature"))?;
    let timestamp =
        param(params, "auth_timestamp").ok_or(RequestAuthError::MissingParam("auth_timestamp"))?;
    match param(params, "auth_version") {
        Some("1.0") => {}
        Some(_) => return Err(RequestAuthError::BadVersion),
        None => return Err(RequestAuthError::MissingParam("auth_version")),
    }
    let timestamp: i64 = timestamp
        .parse()
        .map_err(|_| RequestAuthError::BadTimestamp)?;
    let skew = request.now_unix.saturating_sub(timestamp).saturating_abs();
    if skew > TIMESTAMP_WINDOW_SECS {
        return Err(RequestAuthError::TimestampExpired { skew });
    }
    let signature = signature.to_ascii_lowercase();
    let mut first_signed = None;
    for path in request.paths {
        let signed = request_string_to_sign(request.method, path, params);
        if constant_time_eq(&signature, &hmac_hex(secret, &signed)) {
            return Ok(());
        }
        first_signed.get_or_insert(signed);
    }
    Err(RequestAuthError::BadSignature {
        signed: first_signed.unwrap_or_default(),
    })
}

/// Verifies `body` against the signed `body_md5` (required with a body).
pub fn verify_body(params: &[(String, String)], body: &[u8]) -> Result<(), RequestAuthError> {
    match param(params, "body_md5") {
        Some(given) if !constant_time_eq(&given.to_ascii_lowercase(), &body_md5(body)) => {
            Err(RequestAuthError::BodyMd5Mismatch)
        }
        None if !body.is_empty() => Err(RequestAuthError::MissingBodyMd5),
        _ => Ok(()),
    }
}

/// [`verify_query`], then [`verify_body`].
pub fn verify_request(request: &SignedRequest<'_>, secret: &str) -> Result<(), RequestAuthError> {
    verify_query(
        &SignedQuery {
            method: request.method,
            paths: request.paths,
            params: request.params,
            now_unix: request.now_unix,
        },
        secret,
    )?;
    verify_body(request.params, request.body)
}

#[cfg(test)]
mod tests {

    #[test]
    fn signed_queries_verify() {
        let body = br#"{"name":"e","channel":"c","data":"{}"}"#;
        let query = signed_query(
            "POST",
            "/apps/1/events",
            "key",
            "secret",
            body,
            1_700_000_000,
            &[("info", "user_count")],
        );
        let params: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        let paths = ["/apps/1/events".to_owned()];
        let request = SignedRequest {
            method: "POST",
            paths: &paths,
            params: &params,
            body,
            now_unix: 1_700_000_000,
        };
        assert_eq!(verify_request(&request, "secret"), Ok(()));
        assert!(verify_request(&request, "other").is_err());
    }

    use super::*;

    const KEY: &str = "278d425bdf160c739803";
    const SECRET: &str = "7ad3773142a6692b25b8";

    #[test]
    fn reference_vectors() {
        assert_eq!(
            hmac_hex(SECRET, "1234.1234:private-foobar"),
            "58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4"
        );
        // Pusher's documented vector signs "Mr. Pusher"; the reference page's
        // "Mr. Channels" does not produce the listed digest.
        let presence = channel_string_to_sign(
            "1234.1234",
            "presence-foobar",
            Some(r#"{"user_id":10,"user_info":{"name":"Mr. Pusher"}}"#),
        );
        assert_eq!(
            hmac_hex(SECRET, &presence),
            "afaed3695da2ffd16931f457e338e6c9f2921fa133ce7dac49f529792be6304c"
        );
        assert_eq!(
            hmac_hex(
                SECRET,
                &signin_string_to_sign("1234.1234", r#"{"id":"12345"}"#)
            ),
            "4708d583dada6a56435fb8bc611c77c359a31eebde13337c16ab43aa6de336ba"
        );
    }

    #[test]
    fn verify_auth_checks_key_and_signature() {
        let good =
            format!("{KEY}:58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4");
        assert_eq!(
            verify_auth(KEY, SECRET, "1234.1234:private-foobar", &good),
            Ok(())
        );
        assert_eq!(
            verify_auth(KEY, SECRET, "1234.1234:private-other", &good),
            Err(AuthError::BadSignature {
                signed: "1234.1234:private-other".into()
            })
        );
        assert_eq!(
            verify_auth("otherkey", SECRET, "1234.1234:private-foobar", &good),
            Err(AuthError::WrongKey)
        );
        assert_eq!(
            verify_auth(KEY, SECRET, "x", "nocolon"),
            Err(AuthError::Malformed)
        );
    }

    fn reference_request(now: i64, body: &str, md5: &str) -> Result<(), RequestAuthError> {
        let params: Vec<(String, String)> = [
            ("auth_key", KEY),
            ("auth_timestamp", "1353088179"),
            ("auth_version", "1.0"),
            ("body_md5", md5),
            (
                "auth_signature",
                "da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c",
            ),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let paths = ["/apps/3/events".to_string()];
        verify_request(
            &SignedRequest {
                method: "POST",
                paths: &paths,
                params: &params,
                body: body.as_bytes(),
                now_unix: now,
            },
            SECRET,
        )
    }

    #[test]
    fn extreme_timestamps_are_refused_not_overflowed() {
        for timestamp in [i64::MIN, i64::MAX] {
            let params = vec![
                ("auth_key".to_string(), KEY.to_string()),
                ("auth_timestamp".to_string(), timestamp.to_string()),
                ("auth_version".to_string(), "1.0".to_string()),
                ("auth_signature".to_string(), "00".to_string()),
            ];
            let paths = ["/apps/3/events".to_string()];
            let request = SignedRequest {
                method: "GET",
                paths: &paths,
                params: &params,
                body: b"",
                now_unix: 1_700_000_000,
            };
            assert!(matches!(
                verify_request(&request, SECRET),
                Err(RequestAuthError::TimestampExpired { .. })
            ));
        }
    }

    #[test]
    fn reference_request_signature() {
        let body = r#"{"name":"foo","channels":["project-3"],"data":"{\"some\":\"data\"}"}"#;
        assert_eq!(
            body_md5(body.as_bytes()),
            "ec365a775a4cd0599faeb73354201b6f"
        );
        assert_eq!(
            reference_request(1353088179 + 10, body, "ec365a775a4cd0599faeb73354201b6f"),
            Ok(())
        );
        assert_eq!(
            reference_request(1353088179 + 601, body, "ec365a775a4cd0599faeb73354201b6f"),
            Err(RequestAuthError::TimestampExpired { skew: 601 })
        );
        assert_eq!(
            reference_request(1353088179, "{}", "ec365a775a4cd0599faeb73354201b6f"),
            Err(RequestAuthError::BodyMd5Mismatch)
        );
    }
}
