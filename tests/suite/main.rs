//! Every Rust integration test, in one test binary: each file is a module
//! (`cargo test --test suite check::` runs one), and they share `common/`,
//! the harness that starts real servers. One binary links the library once;
//! fourteen linked it fourteen times, which was most of a rebuild's time on
//! two cores.

mod common;

mod check;
mod cli;
mod docs;
mod flarum2;
mod forum;
mod grafana;
mod hardening;
mod http_api;
mod limits;
mod malformed;
mod nginx;
mod operations;
mod properties;
mod tls;
mod websocket;
