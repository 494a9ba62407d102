//! What the forum's browsers are told and meet: ws:// or wss:// for the
//! forum's scheme, the origins allowed, and Cloudflare's proxy ports.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::Finding;
use super::listening::is_loopback;
use super::live::Browsers;
use crate::config::{Resolved, Settings};
use crate::forum::{Extension, ForumConfig, ForumSettings};

/// Ports Cloudflare's proxy forwards for HTTPS on every plan.
const CLOUDFLARE_HTTPS_PORTS: [u16; 5] = [2053, 2083, 2087, 2096, 8443];

/// An https forum needs wss://: a browser on an https page never opens a
/// plain ws:// connection, so a plain port without a proxy reaches nobody.
/// The Kyrne extension's "Force secure" switch asks the same of an http
/// forum: its pages open wss:// and its PHP side posts over https://.
pub(super) fn check_scheme(
    settings: &Settings,
    forum: Option<&ForumConfig>,
    extension: Option<&ForumSettings>,
    proxied_at: Option<&str>,
) -> Option<Finding> {
    let url = forum?.url.as_deref()?;
    let https = url.starts_with("https://");
    if extension.is_some_and(|e| e.extension == Extension::Realtime) {
        return https.then(|| realtime_scheme(settings, url));
    }
    let force_secure = extension.is_some_and(|e| e.force_secure);
    let why = match (https, force_secure) {
        (true, _) => format!("{url} is https"),
        (false, true) => {
            format!("{url} is http, but the extension's \"Force secure\" switch is on")
        }
        (false, false) => return None,
    };
    Some(if settings.reverse_proxy {
        Finding::pass(
            "https",
            format!("{why}; the reverse proxy serves wss:// in front of flarum-ws"),
        )
    } else if settings.tls.is_some() {
        Finding::pass("https", format!("{why}; flarum-ws serves wss:// itself"))
    } else if let Some(place) = proxied_at {
        // nginx serves wss:// in front, as the extension's README sets it
        // up; what is wrong is the switch that tells flarum-ws so.
        Finding::warn(
            "https",
            format!(
                "{why}; nginx serves wss:// in front of flarum-ws ({place}), but \"Reverse Proxy Support\" is off: flarum-ws listens on {}:{} in plain ws:// for anyone who reaches the port, and does not trust nginx's address, so every tab counts as 127.0.0.1 for the per-address limits",
                settings.host, settings.port
            ),
            "turn on \"Reverse Proxy Support\" on the extension's page: flarum-ws then listens on 127.0.0.1 only and trusts nginx to name each client",
        )
    } else if https {
        Finding::fail(
            "https",
            format!(
                "the forum is served over https ({url}) but flarum-ws serves plain ws:// on port {}: browsers on an https page only open wss://, so every tab fails to connect",
                settings.port
            ),
            "turn on \"Reverse Proxy Support\" on the extension's page and put nginx in front (flarum-ws nginx-snippet prints the configuration), or fill in the certificate and key there so flarum-ws serves TLS itself",
        )
    } else {
        Finding::fail(
            "https",
            format!(
                "{why}: browsers open wss:// and the forum posts its events over https:// to port {}, but flarum-ws serves plain ws:// there, so every tab fails to connect and no event is delivered",
                settings.port
            ),
            "turn \"Force secure\" off on the extension's page (the forum is http), or serve TLS: fill in the certificate and key there, or turn on \"Reverse Proxy Support\" and put nginx with TLS in front",
        )
    })
}

/// An https Flarum 2 forum: flarum/realtime's pages open wss:// on its
/// js-client-port.
pub(super) fn realtime_scheme(settings: &Settings, url: &str) -> Finding {
    if settings.tls.is_some() {
        Finding::pass(
            "https",
            format!(
                "{url} is https; flarum-ws serves wss:// itself on port {}",
                settings.port
            ),
        )
    } else if is_loopback(&settings.host) {
        Finding::pass(
            "https",
            format!(
                "{url} is https; flarum-ws listens on {}:{} behind the proxy that serves wss:// to browsers",
                settings.host, settings.port
            ),
        )
    } else {
        Finding::fail(
            "https",
            format!(
                "the forum is served over https ({url}), so flarum/realtime's pages open wss:// on its js-client-port, but flarum-ws serves plain ws:// on port {}: every tab fails to connect",
                settings.port
            ),
            "put nginx in front: flarum-ws nginx-snippet prints the server block for the browsers' port and the config.php lines that move flarum-ws behind it; or set FLARUM_WS_TLS_CERT and FLARUM_WS_TLS_KEY (in /etc/default/flarum-ws) so flarum-ws serves TLS itself",
        )
    }
}

/// Where the Kyrne extension's browsers connect when it is not the proxy's
/// 443 (no reverse proxy, and none found in nginx's configuration): its
/// port, over TLS when the forum is https or "Force secure" is on.
pub(super) fn kyrne_browser_port(
    settings: &Settings,
    forum: &ForumConfig,
    extension: &ForumSettings,
    proxied: bool,
) -> Option<(u16, bool)> {
    if settings.reverse_proxy {
        return None;
    }
    // Behind nginx (the extension's README routes websockets on the
    // forum's 443), browsers come through it even with the switch off.
    if proxied {
        return Some((443, true));
    }
    let https = forum
        .url
        .as_deref()
        .is_some_and(|u| u.starts_with("https://"));
    Some((
        settings.port,
        settings.tls.is_some() || https || extension.force_secure,
    ))
}

pub(super) fn check_origins(resolved: &Resolved) -> Finding {
    let settings = &resolved.settings;
    let source = resolved
        .provenance
        .get("allowed_origins")
        .map_or_else(|| "default".to_owned(), ToString::to_string);
    if settings.allowed_origins.iter().any(|o| o == "*") {
        return Finding::pass(
            "origins",
            format!("pages of any website may connect (\"*\" in allowed_origins, from {source})"),
        );
    }
    if !settings.allowed_origins.is_empty() {
        return Finding::pass(
            "origins",
            format!(
                "browsers on {} only (from {source})",
                settings.allowed_origins.join(", ")
            ),
        );
    }
    Finding::warn(
        "origins",
        "pages of any website may open websockets to this server",
        "set allowed_origins to the origin of the pages that use it: FLARUM_WS_ALLOWED_ORIGINS=https://your.site (in /etc/default/flarum-ws under systemd)",
    )
}

/// Cloudflare's published proxy ranges (cloudflare.com/ips, 2026): an
/// address in them is Cloudflare's proxy, which passes websockets on 443
/// and the ports of [`CLOUDFLARE_HTTPS_PORTS`] only. A list flarum-ws
/// keeps, not Cloudflare's answer: the finding says which address matched.
const CLOUDFLARE_V4: [(Ipv4Addr, u8); 15] = [
    (Ipv4Addr::new(173, 245, 48, 0), 20),
    (Ipv4Addr::new(103, 21, 244, 0), 22),
    (Ipv4Addr::new(103, 22, 200, 0), 22),
    (Ipv4Addr::new(103, 31, 4, 0), 22),
    (Ipv4Addr::new(141, 101, 64, 0), 18),
    (Ipv4Addr::new(108, 162, 192, 0), 18),
    (Ipv4Addr::new(190, 93, 240, 0), 20),
    (Ipv4Addr::new(188, 114, 96, 0), 20),
    (Ipv4Addr::new(197, 234, 240, 0), 22),
    (Ipv4Addr::new(198, 41, 128, 0), 17),
    (Ipv4Addr::new(162, 158, 0, 0), 15),
    (Ipv4Addr::new(104, 16, 0, 0), 13),
    (Ipv4Addr::new(104, 24, 0, 0), 14),
    (Ipv4Addr::new(172, 64, 0, 0), 13),
    (Ipv4Addr::new(131, 0, 72, 0), 22),
];

/// The IPv6 ranges of the same list.
const CLOUDFLARE_V6: [(Ipv6Addr, u8); 7] = [
    (Ipv6Addr::new(0x2400, 0xcb00, 0, 0, 0, 0, 0, 0), 32),
    (Ipv6Addr::new(0x2606, 0x4700, 0, 0, 0, 0, 0, 0), 32),
    (Ipv6Addr::new(0x2803, 0xf800, 0, 0, 0, 0, 0, 0), 32),
    (Ipv6Addr::new(0x2405, 0xb500, 0, 0, 0, 0, 0, 0), 32),
    (Ipv6Addr::new(0x2405, 0x8100, 0, 0, 0, 0, 0, 0), 32),
    (Ipv6Addr::new(0x2a06, 0x98c0, 0, 0, 0, 0, 0, 0), 29),
    (Ipv6Addr::new(0x2c0f, 0xf248, 0, 0, 0, 0, 0, 0), 32),
];

/// Whether `ip` is in Cloudflare's proxy ranges.
fn is_cloudflare(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => CLOUDFLARE_V4.iter().any(|(net, bits)| {
            let mask = u32::MAX.checked_shl(32 - u32::from(*bits)).unwrap_or(0);
            u32::from(ip) & mask == u32::from(*net) & mask
        }),
        IpAddr::V6(ip) => CLOUDFLARE_V6.iter().any(|(net, bits)| {
            let mask = u128::MAX.checked_shl(128 - u32::from(*bits)).unwrap_or(0);
            u128::from(ip) & mask == u128::from(*net) & mask
        }),
    }
}

/// The addresses `host` resolves to from here (an address is itself);
/// empty when it does not resolve within a few seconds.
async fn addresses_of(host: &str) -> Vec<IpAddr> {
    if let Ok(ip) = host.trim_matches(['[', ']']).parse::<IpAddr>() {
        return vec![ip];
    }
    let lookup = tokio::net::lookup_host((host.to_owned(), 443));
    match tokio::time::timeout(std::time::Duration::from_secs(3), lookup).await {
        Ok(Ok(found)) => found.map(|address| address.ip()).collect(),
        _ => Vec::new(),
    }
}

/// Cloudflare's proxy passes websockets on a few ports only: a forum whose
/// address is Cloudflare's and whose browsers connect elsewhere reaches no
/// one. Judged on the address the browsers' host resolves to; where it is
/// not Cloudflare's (or does not resolve from here), said as a condition.
pub(super) async fn check_cloudflare(
    settings: &Settings,
    browsers: &Browsers,
    realtime: bool,
) -> Option<Finding> {
    let (port, _) = browsers.port_and_tls(settings);
    if port == 443 || CLOUDFLARE_HTTPS_PORTS.contains(&port) {
        return None;
    }
    let setting = if realtime {
        "js-client-port in config.php's 'websocket' array, and the port the proxy listens on"
    } else {
        "the port on the extension's settings page"
    };
    let ports = "443, 2053, 2083, 2087, 2096 or 8443";
    let host = &browsers.host;
    let addresses = addresses_of(host).await;
    Some(match addresses.iter().find(|ip| is_cloudflare(**ip)) {
        Some(ip) => Finding::fail(
            "cloudflare",
            format!(
                "browsers connect to {host}:{port}, and {host} is Cloudflare's proxy ({ip}, in Cloudflare's published ranges), which does not pass port {port}: every tab fails to connect"
            ),
            format!("use {ports} ({setting}), or turn Cloudflare's proxy off for this name"),
        ),
        None if addresses.is_empty() => Finding::pass(
            "cloudflare",
            format!(
                "browsers connect to port {port}; {host} does not resolve from this machine, so whether Cloudflare proxies it is not known: if it does (orange cloud), use {ports} ({setting})"
            ),
        ),
        None => Finding::pass(
            "cloudflare",
            format!(
                "browsers connect to port {port}; {host} resolves to {}, not Cloudflare's proxy, so Cloudflare's port list does not apply",
                addresses
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cloudflare_s_ranges_are_matched_by_prefix() {
        assert!(is_cloudflare("104.16.0.1".parse().unwrap()));
        assert!(is_cloudflare("172.71.255.255".parse().unwrap()));
        assert!(!is_cloudflare("172.72.0.0".parse().unwrap()));
        assert!(is_cloudflare("2606:4700::1111".parse().unwrap()));
        assert!(is_cloudflare("2a06:98c7::1".parse().unwrap()));
        assert!(!is_cloudflare("2a06:98c8::1".parse().unwrap()));
        assert!(!is_cloudflare("127.0.0.1".parse().unwrap()));
    }
}
