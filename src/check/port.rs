//! Is the port free, or held by a running flarum-ws, and if so, one serving
//! this forum or another forum configured for the same port?

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::Finding;
use super::restarts::SocketUnit;
use crate::config::Settings;
use crate::probe::{Target, local_address, request};
use crate::server::{listening_processes, port_holder};

/// `forum_root`: the forum this check is for, if any, to tell its own
/// running server from another forum's with the same credentials (a
/// staging copy on the same machine).
/// `socket_unit`: flarum-ws-listen.socket as systemd has it, which may hold the
/// port for the service (socket activation).
pub async fn check_port(
    settings: &Settings,
    forum_root: Option<&Path>,
    socket_unit: Option<&SocketUnit>,
) -> Finding {
    let (host, port) = (settings.host.as_str(), settings.port);
    let Ok(ip) = host.parse() else {
        return Finding::fail(
            "port",
            format!("bind address {host:?} is not an IP address"),
            "use 0.0.0.0 or 127.0.0.1",
        );
    };
    match TcpListener::bind(SocketAddr::new(ip, port)) {
        Ok(listener) => {
            drop(listener);
            match elsewhere(settings, forum_root).await {
                Some((pid, old)) => Finding::fail(
                    "port",
                    format!(
                        "{host}:{port} is free, but this forum's flarum-ws (pid {pid}) still listens on port {old}: the port changed since it started, so browsers find nothing on {port}"
                    ),
                    "restart flarum-ws to move it (systemctl restart flarum-ws; a reload keeps the port it listens on), and change the port in the nginx proxy_pass too if there is one",
                ),
                None => Finding::pass("port", format!("{host}:{port} is free")),
            }
        }
        Err(error) if error.kind() == std::io::ErrorKind::AddrInUse => match port_holder(port) {
            Some((pid, name)) if name == "flarum-ws" => {
                held_by_flarum_ws(settings, forum_root, pid).await
            }
            Some((_, name))
                if name == "systemd"
                    && socket_unit
                        .is_some_and(|unit| unit.active && unit.listens_on(host, port)) =>
            {
                Finding::pass(
                    "port",
                    format!(
                        "{host}:{port} is held by systemd for flarum-ws (flarum-ws-listen.socket); the service starts with the first connection"
                    ),
                )
            }
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
        Err(error) if error.kind() == std::io::ErrorKind::PermissionDenied => Finding::fail(
            "port",
            format!("cannot listen on {host}:{port}: {error}, so the service would fail to start"),
            super::listening::low_port_fix(port, 1024),
        ),
        Err(error) => Finding::fail(
            "port",
            format!("cannot listen on {host}:{port}: {error}"),
            "choose another address or port",
        ),
    }
}

/// A running flarum-ws serving this forum's app on another port: (pid,
/// port). Where its forum root can be seen, it must be this forum's.
async fn elsewhere(settings: &Settings, forum_root: Option<&Path>) -> Option<(u32, u16)> {
    for (pid, ports) in listening_processes("flarum-ws") {
        for port in ports {
            if let Some((id, key)) = about(settings, port).await
                && id == settings.app.id
                && key == settings.app.key
                && same_root(forum_root, pid)
            {
                return Some((pid, port));
            }
        }
    }
    None
}

/// What the flarum-ws on `port` of this machine says it serves (`/about`):
/// its app id and key.
async fn about(settings: &Settings, port: u16) -> Option<(String, String)> {
    let about = about_json(settings, port).await?;
    Some((
        about["app_id"].as_str()?.to_owned(),
        about["key"].as_str()?.to_owned(),
    ))
}

/// All the flarum-ws on `port` of this machine says of itself (`/about`).
pub(super) async fn about_json(settings: &Settings, port: u16) -> Option<Value> {
    let target = Target {
        address: local_address(&settings.host),
        port,
        tls: settings.tls.is_some(),
        server_name: "localhost".into(),
        insecure: true,
    };
    let body = match request(&target, "GET", "/about", String::new()).await {
        Ok((200, body)) => body,
        _ => return None,
    };
    serde_json::from_str(&body).ok()
}

/// The port is held by a flarum-ws: ask it (`/about`) which app it serves.
/// Another forum's server on this forum's port is a failure: this forum's
/// service cannot start, and its browsers reach the other forum.
async fn held_by_flarum_ws(settings: &Settings, forum_root: Option<&Path>, pid: u32) -> Finding {
    let (host, port) = (settings.host.as_str(), settings.port);
    let Some((id, key)) = about(settings, port).await else {
        return Finding::pass(
            "port",
            format!(
                "{host}:{port} is held by a running flarum-ws (pid {pid}); it did not say which forum it serves (a version before /about)"
            ),
        );
    };
    if id == settings.app.id && key == settings.app.key && same_root(forum_root, pid) {
        return Finding::pass(
            "port",
            format!(
                "{host}:{port} is held by the running flarum-ws (pid {pid}), serving this forum's app (id {id})"
            ),
        );
    }
    let root = forum_root_of(pid).map_or_else(
        || "its forum root cannot be seen by this user (run check as root)".to_owned(),
        |root| format!("forum root {}", root.display()),
    );
    Finding::fail(
        "port",
        format!(
            "{host}:{port} is held by another forum's flarum-ws (pid {pid}: app id {id}, key {key}, {root}), not this forum's (app id {}, key {}): this forum's service cannot start, and its browsers would reach the other forum",
            settings.app.id, settings.app.key
        ),
        "each forum needs a port of its own: choose another port for this forum in the extension's settings (and in its nginx proxy_pass), then start its flarum-ws",
    )
}

/// Whether flarum-ws `pid` serves the forum at `forum_root`, as far as this
/// user can see (another forum with the same credentials, a staging copy on
/// the same machine, is not this forum).
fn same_root(forum_root: Option<&Path>, pid: u32) -> bool {
    match (forum_root, forum_root_of(pid)) {
        (Some(ours), Some(theirs)) => ours.canonicalize().ok() == theirs.canonicalize().ok(),
        _ => true,
    }
}

/// The forum root a running flarum-ws was started for: `--root`, else
/// `FLARUM_WS_ROOT`, else its working directory (readable for the same user
/// or root only).
fn forum_root_of(pid: u32) -> Option<PathBuf> {
    let proc = PathBuf::from(format!("/proc/{pid}"));
    let split = |bytes: Vec<u8>| -> Vec<String> {
        bytes
            .split(|b| *b == 0)
            .map(|part| String::from_utf8_lossy(part).into_owned())
            .collect()
    };
    let arguments = split(std::fs::read(proc.join("cmdline")).ok()?);
    let flag = arguments.iter().enumerate().find_map(|(i, argument)| {
        if argument == "--root" {
            arguments.get(i + 1).cloned()
        } else {
            argument.strip_prefix("--root=").map(str::to_owned)
        }
    });
    let variable = || {
        split(std::fs::read(proc.join("environ")).ok()?)
            .into_iter()
            .find_map(|pair| pair.strip_prefix("FLARUM_WS_ROOT=").map(str::to_owned))
    };
    let cwd = std::fs::read_link(proc.join("cwd")).ok();
    match (flag.or_else(variable).map(PathBuf::from), cwd) {
        (Some(root), _) if root.is_absolute() => Some(root),
        (Some(root), Some(cwd)) => Some(cwd.join(root)),
        (None, cwd) => cwd,
        (Some(_), None) => None,
    }
}
