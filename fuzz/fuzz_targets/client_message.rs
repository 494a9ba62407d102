//! Websocket frames from browsers: the message parser and the parsers of
//! what a message carries (presence member, signin user, channel name).
#![no_main]

use flarum_ws::protocol::ChannelName;
use flarum_ws::protocol::messages::{
    parse_client_message, parse_presence_member, parse_signin_user,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = parse_client_message(&text);
    let _ = parse_presence_member(Some(&text), 128, 1024);
    let _ = parse_signin_user(&text);
    let _ = ChannelName::parse(&text, 200);
});
