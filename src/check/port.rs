//! Is the port free, or held by a running flarum-ws? Linux only: the holder
//! is found through /proc/net/tcp and the processes' file descriptors.

use std::net::{SocketAddr, TcpListener};

use super::Finding;

/// The listening socket inodes for `port` from /proc/net/tcp and tcp6.
fn listening_inodes(port: u16) -> Vec<String> {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // local_address is HEXIP:HEXPORT; state 0A is LISTEN.
            let (Some(local), Some(state), Some(inode)) =
                (fields.get(1), fields.get(3), fields.get(9))
            else {
                continue;
            };
            let listening_port = local
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            if *state == "0A" && listening_port == Some(port) {
                inodes.push((*inode).to_owned());
            }
        }
    }
    inodes
}

/// The process holding a socket with one of `inodes`: (pid, command name).
fn holder(inodes: &[String]) -> Option<(u32, String)> {
    let targets: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(link) = std::fs::read_link(fd.path())
                && targets.iter().any(|t| link.to_string_lossy() == *t)
            {
                let name = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
                return Some((pid, name.trim().to_owned()));
            }
        }
    }
    None
}

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
        Err(error) if error.kind() == std::io::ErrorKind::AddrInUse => {
            match holder(&listening_inodes(port)) {
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
            }
        }
        Err(error) => Finding::fail(
            "port",
            format!("cannot listen on {host}:{port}: {error}"),
            "ports below 1024 need root or CAP_NET_BIND_SERVICE; choose a higher port",
        ),
    }
}
