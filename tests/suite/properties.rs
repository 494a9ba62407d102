//! Bounded property tests (run in CI on every test run): the parsers that
//! see untrusted input never panic, whatever bytes arrive. Inputs mix random
//! bytes with fragments of the real syntax so the parsers get deep.

use flarum_ws::forum::php_literal::parse_config;
use flarum_ws::protocol::messages::{
    parse_client_message, parse_presence_member, parse_signin_user,
};
use flarum_ws::protocol::signature::{SignedRequest, verify_request};
use flarum_ws::protocol::{ChannelName, SocketId};
use proptest::prelude::*;

/// Strings built from pieces of the syntax under test plus noise.
fn fragments(pieces: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            3 => prop::sample::select(pieces).prop_map(str::to_owned),
            1 => any::<String>(),
            1 => prop::collection::vec(any::<u8>(), 0..8).prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        ],
        0..40,
    )
    .prop_map(|parts| parts.concat())
}

const JSON_PIECES: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    "\"",
    "\"event\"",
    "\"data\"",
    "\"channel\"",
    "\"pusher:subscribe\"",
    "\"pusher:signin\"",
    "\"client-x\"",
    "\"auth\"",
    "\"channel_data\"",
    "\"user_id\"",
    "\"user_info\"",
    "\"id\"",
    "\"watchlist\"",
    "null",
    "true",
    "1",
    "-1e999",
    "\"\\u0000\"",
    "\\\"",
    "\"private-a\"",
    "\"presence-a\"",
];

const PHP_PIECES: &[&str] = &[
    "<?php",
    " return ",
    "[",
    "]",
    "array(",
    ")",
    "=>",
    ",",
    ";",
    "'",
    "\"",
    "\\",
    "$",
    "{$",
    "//",
    "#",
    "/*",
    "*/",
    "?>",
    "\n",
    "0x",
    "0b",
    "07",
    "1.5e3",
    "-",
    "NULL",
    "true",
    "getenv('A')",
    "(int)",
    "?:",
    ".",
    "\\u{",
    "\\x4",
    "\\0",
    "'database'",
    "'driver' => 'mysql'",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn websocket_messages_never_panic(text in fragments(JSON_PIECES)) {
        let _ = parse_client_message(&text);
        let _ = parse_presence_member(Some(&text), 128, 1024);
        let _ = parse_signin_user(&text);
        let _ = ChannelName::parse(&text, 200);
        let _ = text.parse::<SocketId>();
    }

    #[test]
    fn config_php_never_panics(text in fragments(PHP_PIECES)) {
        let _ = parse_config(&text);
        let _ = parse_config(&format!("<?php return {text}"));
    }

    #[test]
    fn any_timestamp_and_clock_are_handled(timestamp in any::<i64>(), now in any::<i64>()) {
        let params = vec![
            ("auth_key".to_owned(), "k".to_owned()),
            ("auth_timestamp".to_owned(), timestamp.to_string()),
            ("auth_version".to_owned(), "1.0".to_owned()),
            ("auth_signature".to_owned(), "00".to_owned()),
        ];
        let paths = ["/apps/1/events".to_owned()];
        let _ = verify_request(
            &SignedRequest { method: "GET", paths: &paths, params: &params, body: b"", now_unix: now },
            "secret",
        );
    }

    #[test]
    fn request_verification_never_panics(
        params in prop::collection::vec((fragments(&["auth_", "key", "timestamp", "version", "signature", "body_md5", "="]), any::<String>()), 0..8),
        body in prop::collection::vec(any::<u8>(), 0..64),
        path in any::<String>(),
        now in any::<i64>(),
    ) {
        let paths = [path];
        let _ = verify_request(
            &SignedRequest { method: "POST", paths: &paths, params: &params, body: &body, now_unix: now },
            "secret",
        );
    }
}
