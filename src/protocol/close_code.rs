//! The close and error codes of the Pusher protocol.
//!
//! pusher-js decides how to reconnect from the code alone: 4000-4099 never
//! reconnect, 4100-4199 back off, 4200-4299 reconnect at once. 43xx codes are
//! sent in `pusher:error` without closing the connection.

/// Connection must use TLS.
pub const TLS_ONLY: u16 = 4000;
/// The key in `/app/{key}` belongs to no application.
pub const APP_NOT_FOUND: u16 = 4001;
/// The application exists but is disabled.
pub const APP_DISABLED: u16 = 4003;
/// The application is over its connection quota.
pub const OVER_CONNECTION_QUOTA: u16 = 4004;
/// The request path is not `/app/{key}`.
pub const PATH_NOT_FOUND: u16 = 4005;
/// The `protocol` query parameter is not a number.
pub const INVALID_VERSION: u16 = 4006;
/// The client speaks a protocol version this server does not.
pub const UNSUPPORTED_PROTOCOL: u16 = 4007;
/// The client sent no `protocol` query parameter.
pub const NO_PROTOCOL: u16 = 4008;
/// The connection is not (or no longer) authorized, e.g. terminated by the app.
pub const UNAUTHORIZED: u16 = 4009;
/// Over capacity: the client backs off before reconnecting (slow consumers).
pub const OVER_CAPACITY: u16 = 4100;
/// Generic "reconnect now"; used for graceful shutdown.
pub const RECONNECT_NOW: u16 = 4200;
/// The client did not answer a `pusher:ping` in time.
pub const PONG_NOT_RECEIVED: u16 = 4201;
/// Closed after a long time without activity.
pub const CLOSED_AFTER_INACTIVITY: u16 = 4202;
/// Client events sent faster than the per-connection limit (no close).
pub const CLIENT_EVENT_RATE_LIMIT: u16 = 4301;
/// A signin's watchlist is longer than the limit (no close).
pub const WATCHLIST_LIMIT: u16 = 4302;
