//! flarum-ws: a Pusher-compatible realtime server for Flarum forums.
//!
//! ```text
//! cli ─► config::resolve (flags ◄ env ◄ .env ◄ YAML ◄ defaults)
//!     ─► server::run(listener, settings, shutdown)
//!          http_api ─publish─► hub ─► per-socket bounded queue ─► socket
//!          websocket session ─client event─┘
//!          hub ─channel changes─► webhooks ─► receivers (own queues)
//! ```
//!
//! Dependencies point one way: `protocol` ← `hub` ← `server` ← `cli`, and
//! `config` ← `cli`. `protocol` is pure (no I/O) so it can be fuzzed; the hub
//! knows no sockets; the server never parses configuration files; telemetry
//! reads the hub, the cluster and the webhook senders when it reports, and
//! none of them reaches into it. The arrows each module may have are listed
//! in `layering.rs`, whose test keeps them true (no cycle is left).

pub mod access;
pub mod check;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod forum;
pub mod hub;
pub mod loading;
pub mod probe;
pub mod protocol;
pub mod server;
pub mod telemetry;
pub mod throttle;
pub mod tls;
pub mod webhooks;

#[cfg(test)]
mod layering;
