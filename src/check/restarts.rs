//! Would a restart or a package upgrade refuse the forum's API calls? Not
//! when systemd holds the listening socket (`flarum-ws-listen.socket`, socket
//! activation): calls then wait in its backlog while the service starts
//! again. What the socket unit listens on, and whether it is active, is
//! asked of systemd itself (`systemctl show`), never read from unit files.

use std::net::SocketAddr;

use super::Finding;
use super::as_service::systemctl_show_text;

/// flarum-ws-listen.socket as systemd has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketUnit {
    /// `ActiveState=active`: systemd holds the socket now.
    pub active: bool,
    /// `UnitFileState` (`enabled`, `disabled`, ...).
    pub enabled: String,
    /// Each `ListenStream=` address (`127.0.0.1:2083`).
    pub listen: Vec<String>,
}

/// What systemd says about flarum-ws-listen.socket; `None` when systemd is not
/// this machine's service manager or no such unit is installed.
pub fn socket_unit() -> Option<SocketUnit> {
    if !std::path::Path::new("/run/systemd/system").is_dir() {
        return None;
    }
    let text = systemctl_show_text(
        "flarum-ws-listen.socket",
        &["LoadState", "ActiveState", "UnitFileState", "Listen"],
    )
    .ok()?;
    parse_show(&text)
}

/// `systemctl show`'s `KEY=value` lines as a [`SocketUnit`].
fn parse_show(text: &str) -> Option<SocketUnit> {
    let mut unit = SocketUnit {
        active: false,
        enabled: String::new(),
        listen: Vec::new(),
    };
    let mut loaded = false;
    for line in text.lines() {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        match key {
            "LoadState" => loaded = value == "loaded",
            "ActiveState" => unit.active = value == "active",
            "UnitFileState" => unit.enabled = value.to_owned(),
            // `Listen=127.0.0.1:2083 (Stream)`, one line per socket.
            "Listen" => {
                if let Some(address) = value.strip_suffix(" (Stream)") {
                    unit.listen.push(address.to_owned());
                }
            }
            _ => {}
        }
    }
    loaded.then_some(unit)
}

impl SocketUnit {
    /// Whether one of its sockets is where the settings bind.
    pub fn listens_on(&self, host: &str, port: u16) -> bool {
        self.listen.iter().any(|address| {
            let parsed = address.parse::<SocketAddr>().ok().or_else(|| {
                // `ListenStream=2083` is shown as `[::]:2083`; a bare port too.
                address
                    .parse::<u16>()
                    .ok()
                    .map(|port| SocketAddr::from(([0u8; 16], port)))
            });
            parsed.is_some_and(|address| {
                crate::server::activation::mismatch(address, host, port).is_none()
            })
        })
    }
}

/// The `restarts` finding: whether systemd holds the port through a
/// restart. `None` without systemd (nothing to enable there).
pub fn check_restarts(host: &str, port: u16, unit: Option<&SocketUnit>) -> Option<Finding> {
    let unit = unit?;
    let listens = unit.listens_on(host, port);
    let shown = if unit.listen.is_empty() {
        "nothing".to_owned()
    } else {
        unit.listen.join(", ")
    };
    let enable = "sudo systemctl stop flarum-ws && sudo systemctl enable --now flarum-ws-listen.socket && sudo systemctl start flarum-ws";
    Some(match (unit.active, listens) {
        (true, true) => Finding::pass(
            "restarts",
            format!(
                "systemd holds {host}:{port} (flarum-ws-listen.socket, {}): a restart or an upgrade refuses nothing, the forum's calls wait in the backlog",
                unit.enabled
            ),
        ),
        (true, false) => Finding::fail(
            "restarts",
            format!(
                "flarum-ws-listen.socket listens on {shown}, but the settings say {host}:{port}: browsers and the forum find nothing where they connect"
            ),
            format!(
                "sudo systemctl edit flarum-ws-listen.socket, then [Socket] ListenStream= and ListenStream={host}:{port}; then sudo systemctl stop flarum-ws && sudo systemctl restart flarum-ws-listen.socket && sudo systemctl start flarum-ws"
            ),
        ),
        (false, listens) => Finding::warn(
            "restarts",
            "flarum-ws-listen.socket is not active: every restart and package upgrade refuses the forum's API calls for a moment, and those posts go out without their realtime event",
            if listens {
                format!(
                    "set ListenStream= to the settings' address (it already is {host}:{port}), then {enable}"
                )
            } else {
                format!(
                    "set ListenStream= to the settings' address: sudo systemctl edit flarum-ws-listen.socket, then [Socket] ListenStream= and ListenStream={host}:{port}; then {enable}"
                )
            },
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systemctl_show_is_read_as_systemd_writes_it() {
        let unit = parse_show(
            "Listen=127.0.0.1:2083 (Stream)\nLoadState=loaded\nActiveState=active\nUnitFileState=enabled\n",
        )
        .unwrap();
        assert!(unit.active);
        assert_eq!(unit.listen, ["127.0.0.1:2083"]);
        assert!(unit.listens_on("127.0.0.1", 2083));
        assert!(!unit.listens_on("127.0.0.1", 6001));
        assert_eq!(
            parse_show("LoadState=not-found\nActiveState=inactive\n"),
            None
        );
        let any = parse_show("Listen=[::]:6001 (Stream)\nLoadState=loaded\n").unwrap();
        assert!(any.listens_on("0.0.0.0", 6001));
    }

    /// An active socket where the settings say passes, one elsewhere fails
    /// (browsers find nothing), and one not active warns, whatever it
    /// would listen on: the shipped unit, never turned on, is no failure.
    #[test]
    fn the_socket_unit_is_judged_by_what_systemd_says() {
        let unit = |active: bool, listen: &str| SocketUnit {
            active,
            enabled: "enabled".into(),
            listen: vec![listen.into()],
        };
        let status = |unit: SocketUnit| {
            let finding = check_restarts("0.0.0.0", 36184, Some(&unit)).unwrap();
            serde_json::to_value(&finding).unwrap()["status"].clone()
        };
        assert_eq!(status(unit(true, "0.0.0.0:36184")), "pass");
        assert_eq!(status(unit(true, "127.0.0.1:2083")), "fail");
        assert_eq!(status(unit(false, "127.0.0.1:2083")), "warn");
        assert_eq!(status(unit(false, "0.0.0.0:36184")), "warn");
        assert!(check_restarts("0.0.0.0", 36184, None).is_none());
    }
}
