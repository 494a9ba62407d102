//! What the forum's browsers are told and meet: ws:// or wss:// for the
//! forum's scheme, the origins allowed, and Cloudflare's proxy ports.

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
/// 443: its port, over TLS when the forum is https or "Force secure" is on.
pub(super) fn kyrne_browser_port(
    settings: &Settings,
    forum: &ForumConfig,
    extension: &ForumSettings,
) -> Option<(u16, bool)> {
    if settings.reverse_proxy {
        return None;
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

/// Cloudflare's proxy passes websockets on a few ports only; judged on the
/// port browsers connect to (the proxy's, or flarum/realtime's
/// js-client-port), not on where flarum-ws listens behind it.
pub(super) fn check_cloudflare(
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
    Some(Finding::warn(
        "cloudflare",
        format!("browsers connect to port {port}, which does not pass through Cloudflare's proxy"),
        format!(
            "if the forum's DNS is proxied by Cloudflare (orange cloud), use 443, 2053, 2083, 2087, 2096 or 8443 ({setting})"
        ),
    ))
}
