//! Signed HTTP API requests. Input fields are separated by 0xFF bytes:
//! path, body, then query parameters as alternating names and values. The
//! verifier must never panic on them; and when the fuzzer's request is
//! signed properly here (last byte even), it must be accepted.
#![no_main]

use flarum_ws::protocol::signature::{
    SignedRequest, body_md5, hmac_hex, request_string_to_sign, verify_request,
};
use libfuzzer_sys::fuzz_target;

const SECRET: &str = "fuzz-secret";
const NOW: i64 = 1_700_000_000;

fuzz_target!(|data: &[u8]| {
    let mut fields = data
        .split(|b| *b == 0xFF)
        .map(|f| String::from_utf8_lossy(f).into_owned());
    let path = fields.next().unwrap_or_default();
    let body = fields.next().unwrap_or_default();
    let mut params: Vec<(String, String)> = Vec::new();
    while let Some(name) = fields.next() {
        params.push((name, fields.next().unwrap_or_default()));
    }
    let paths = [path.clone()];
    let verify = |params: &[(String, String)]| {
        verify_request(
            &SignedRequest {
                method: "POST",
                paths: &paths,
                params,
                body: body.as_bytes(),
                now_unix: NOW,
            },
            SECRET,
        )
    };
    let _ = verify(&params);

    if data.last().is_some_and(|b| b % 2 == 0) {
        // The same request, signed as a Pusher SDK would sign it.
        for (name, _) in params.iter_mut() {
            *name = name.to_ascii_lowercase();
        }
        params.retain(|(name, _)| {
            !name.starts_with("auth_") && name != "body_md5" && !name.is_empty()
        });
        params.sort();
        params.dedup_by(|a, b| a.0 == b.0);
        params.push(("auth_key".into(), "key".into()));
        params.push(("auth_timestamp".into(), NOW.to_string()));
        params.push(("auth_version".into(), "1.0".into()));
        if !body.is_empty() {
            params.push(("body_md5".into(), body_md5(body.as_bytes())));
        }
        let signature = hmac_hex(SECRET, &request_string_to_sign("POST", &path, &params));
        params.push(("auth_signature".into(), signature));
        let verdict = verify(&params);
        assert!(
            verdict.is_ok(),
            "a properly signed request was refused: {verdict:?}"
        );
    }
});
