//! Is the port free, or held by a running flarum-ws?

use std::net::{SocketAddr, TcpListener};

use super::Finding;
use crate::server::port_holder;

pub fn check_port(host: &str, port: u16) -> Finding {
    let Ok(ip) = host.parse() else {
        return Finding::fail(
            "port",
            format!("bind address {host:?} is not an IP address"),
            "use 0.0.0.0 or 127.0.0.1",
        );
    };
    match TcpListener::bind(SocketAddr::new(ip, port)) {
        Ok(_) => Finding::pass("port", format!("{host}:{port} is free")),
        Err(error) if error.kind() == std::io::ErrorKind::AddrInUse => match port_holder(port) {
            Some((pid, name)) if name == "flarum-ws" => Finding::pass(
                "port",
                format!("{host}:{port} is held by the running flarum-ws (pid {pid})"),
            ),
            Some((pid, name)) => Finding::fail(
                "port",
                format!(
                    "{host}:{port} is already used by {name} (pid {pid}): \"Failed to listen on tcp://{host}:{port}\""
                ),
                format!(
                    "stop {name}, or choose another port in the extension's settings (and in the nginx proxy_pass)"
                ),
            ),
            None => Finding::fail(
                "port",
                format!("{host}:{port} is already in use by a process this user cannot see"),
                "find it with `ss -ltnp` as root, stop it or choose another port",
            ),
        },
        Err(error) => Finding::fail(
            "port",
            format!("cannot listen on {host}:{port}: {error}"),
            "ports below 1024 need root or CAP_NET_BIND_SERVICE; choose a higher port",
        ),
    }
}
