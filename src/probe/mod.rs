//! Talking to a running flarum-ws as its users do: the forum's signed HTTP
//! API calls and a browser's websocket. Used by `trigger` and `check --live`.

mod connect;
mod error;
mod http;

pub use connect::{Stream, Target, connect, local_address};
pub use error::ProbeError;
pub use http::{MAX_ANSWER_BYTES, SignedClient, request, request_with_headers};
