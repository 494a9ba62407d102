//! How the server listens and admits: the bind address, a port below
//! 1024, and the connection limits (the admission rule in force).

use super::Finding;
use super::service_user::ServiceUser;
use super::unit::ServiceUnit;
use crate::config::Settings;
use crate::server::admission::{HIGH_WATER_PERCENT, high_water_mark};

/// A port below the unprivileged range needs root or the capability to
/// bind it; the service's account usually has neither (www-data in the
/// shipped unit), whoever runs `check`.
pub(super) fn check_privileged_port(
    port: u16,
    user: &Result<ServiceUser, String>,
    unit: Option<&ServiceUnit>,
) -> Option<Finding> {
    let first_unprivileged =
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
            .ok()
            .and_then(|text| text.trim().parse::<u16>().ok())
            .unwrap_or(1024);
    if port == 0 || port >= first_unprivileged {
        return None;
    }
    let Ok(user) = user else {
        return None;
    };
    if user.account.uid == 0 {
        return None;
    }
    if unit.is_some_and(may_bind_low_ports) {
        return None;
    }
    Some(Finding::fail(
        "port",
        format!(
            "port {port} is below {first_unprivileged}: {} ({}) cannot bind it, so the service would fail to start",
            user.account.name, user.source
        ),
        low_port_fix(port, first_unprivileged),
    ))
}

/// The fix for a port the service's account may not bind: both lines, as
/// the shipped unit empties the bounding set (an ambient capability outside
/// it is dropped).
pub(super) fn low_port_fix(port: u16, first_unprivileged: u16) -> String {
    format!(
        "choose a port of {first_unprivileged} or more (and put a proxy on {port}), or let the service bind it: systemctl edit flarum-ws, then under [Service] both CapabilityBoundingSet=CAP_NET_BIND_SERVICE and AmbientCapabilities=CAP_NET_BIND_SERVICE"
    )
}

/// Whether the unit gives its process CAP_NET_BIND_SERVICE, read from its
/// files (the fallback where systemd cannot be asked): it must be ambient
/// and inside the bounding set, which each `CapabilityBoundingSet=` line
/// adds to (`~` takes away) and an empty one resets to nothing.
fn may_bind_low_ports(unit: &ServiceUnit) -> bool {
    const CAP: &str = "CAP_NET_BIND_SERVICE";
    let names = |value: &str| {
        value
            .trim_start_matches('~')
            .split_whitespace()
            .any(|name| name.eq_ignore_ascii_case(CAP))
    };
    // None: never assigned (every capability, for the bounding set; none
    // ambient). An empty line resets to none; the first list replaces the
    // default, later ones add to it; `~` lists take away.
    let holds = |key: &str| {
        unit.values(key)
            .fold(None, |held: Option<bool>, (value, _)| {
                Some(if value.is_empty() {
                    false
                } else if value.starts_with('~') {
                    held.unwrap_or(true) && !names(value)
                } else {
                    held.unwrap_or(false) || names(value)
                })
            })
    };
    let ambient = holds("AmbientCapabilities").unwrap_or(false);
    let bounded = holds("CapabilityBoundingSet").unwrap_or(true);
    ambient && bounded
}

/// The admission rule in force: everyone while there is room, then the
/// busiest addresses refused first; and whether one address could still
/// take every place left.
pub(super) fn check_connection_limits(settings: &Settings) -> Finding {
    let limits = &settings.limits;
    let (max, per_ip) = (limits.max_connections, limits.max_connections_per_ip);
    let high_water = high_water_mark(max);
    let band = max - high_water;
    let behind = if settings.trusted_proxies.is_empty() {
        String::new()
    } else {
        format!(
            "; behind a trusted proxy, the address it names in {} (a proxy that names none stands for its clients)",
            settings.client_address_header.header_name()
        )
    };
    let rule = format!(
        "up to {max} websockets in all; below {high_water} open ({HIGH_WATER_PERCENT} %) every address is admitted, however many tabs share it (a school, an office); past that, an address may hold {per_ip}, fewer as the last places go, so the busiest addresses are refused first{behind}"
    );
    if per_ip > band {
        return Finding::warn(
            "connections",
            format!(
                "{rule}: with max_connections_per_ip above the {band} places past the high-water mark, one address can take every place left, and everyone else is refused (4100)"
            ),
            format!(
                "set max_connections_per_ip to at most {band}, e.g. FLARUM_WS_MAX_CONNECTIONS_PER_IP={} in /etc/default/flarum-ws",
                (band / 2).max(1)
            ),
        );
    }
    Finding::pass("connections", rule)
}

pub(super) fn is_loopback(host: &str) -> bool {
    host.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

pub(super) fn check_bind_address(settings: &Settings, realtime: bool) -> Finding {
    if realtime && is_loopback(&settings.host) {
        return Finding::pass(
            "bind address",
            format!(
                "{}:{}: behind a local proxy that serves the browsers' port (flarum-ws nginx-snippet)",
                settings.host, settings.port
            ),
        );
    }
    match (settings.reverse_proxy, is_loopback(&settings.host)) {
        (true, true) => Finding::pass(
            "bind address",
            format!("{}: only the local proxy can connect", settings.host),
        ),
        (true, false) => Finding::warn(
            "bind address",
            format!(
                "reverse-proxy mode is on but the server listens on {}, reachable around the proxy",
                settings.host
            ),
            "bind 127.0.0.1 (remove the host override) so only nginx can connect",
        ),
        (false, true) => Finding::fail(
            "bind address",
            format!(
                "the server listens on {} only, so browsers cannot reach it",
                settings.host
            ),
            "turn on \"Reverse Proxy Support\" and proxy with nginx, or bind 0.0.0.0",
        ),
        (false, false) => Finding::pass(
            "bind address",
            format!(
                "{}: browsers connect to port {} directly",
                settings.host, settings.port
            ),
        ),
    }
}
