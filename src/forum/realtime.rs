//! Flarum 2's first-party `flarum/realtime`: which realtime extension a forum
//! has enabled, and the settings its daemon (`php flarum realtime:serve`)
//! would run with. The daemon reads overrides from config.php's `websocket`
//! array and derives the rest from the forum: key = md5 of the url's host,
//! secret = md5 of the database password, app id `1`, port 6001. The forum's
//! PHP and browser sides compute the same values, so serving them makes
//! flarum-ws a drop-in without touching the forum.

use std::collections::BTreeMap;

use md5::{Digest, Md5};
use serde_json::Value;

use super::ForumError;
use super::config_php::ForumConfig;
use crate::config::{ForumLayer, PartialSettings, Secret};

/// The extension id of Flarum 1's "Websocket by Kyrne" in `extensions_enabled`.
pub const KYRNE: &str = "kyrne-websocket";
/// The extension id of Flarum 2's `flarum/realtime`.
pub const REALTIME: &str = "flarum-realtime";

/// Which realtime extension a forum runs, and so which rules flarum-ws
/// serves it with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extension {
    /// Flarum 1.x with "Websocket by Kyrne" (settings on its admin page).
    Kyrne,
    /// Flarum 2.x with `flarum/realtime` (settings in config.php).
    Realtime,
}

impl Extension {
    pub fn name(self) -> &'static str {
        match self {
            Self::Kyrne => "Websocket by Kyrne (kyrne-websocket, Flarum 1)",
            Self::Realtime => "flarum/realtime (flarum-realtime, Flarum 2)",
        }
    }
}

/// The enabled realtime extension, from the `extensions_enabled` setting (a
/// JSON list of extension ids). A forum without that row (a hand-made test
/// database) is taken as a Kyrne forum, as before Flarum 2 support.
pub fn enabled_extension(extensions_enabled: Option<&str>) -> Result<Extension, ForumError> {
    let Some(text) = extensions_enabled else {
        return Ok(Extension::Kyrne);
    };
    let ids: Vec<String> = serde_json::from_str(text).map_err(|_| ForumError::BadSetting {
        key: "extensions_enabled".into(),
        value: text.chars().take(80).collect(),
        expected: "a JSON list of extension ids".into(),
    })?;
    let has = |id: &str| ids.iter().any(|enabled| enabled == id);
    match (has(KYRNE), has(REALTIME)) {
        (true, false) => Ok(Extension::Kyrne),
        (false, true) => Ok(Extension::Realtime),
        (true, true) => Err(ForumError::Extensions(
            "both realtime extensions are enabled: kyrne-websocket (Websocket by Kyrne) and flarum-realtime (flarum/realtime)".into(),
        )),
        (false, false) => Err(ForumError::Extensions(
            "no realtime extension is enabled: neither kyrne-websocket (Websocket by Kyrne, Flarum 1) nor flarum-realtime (flarum/realtime, Flarum 2)".into(),
        )),
    }
}

/// `md5` as lower-case hex, as PHP's `md5()`.
fn md5_hex(text: &str) -> String {
    hex::encode(Md5::digest(text.as_bytes()))
}

/// The keys of config.php's `websocket` array that flarum/realtime reads
/// (its `Settings.php`); the daemon ignores any other.
pub const WEBSOCKET_KEYS: [&str; 12] = [
    "server-host",
    "server-port",
    "js-client-host",
    "js-client-port",
    "js-client-secure",
    "php-client-host",
    "php-client-port",
    "php-client-secure",
    "php-client-timeout",
    "app-key",
    "app-secret",
    "max-connections",
];

/// Keys of the `websocket` array that nothing reads, each with the known
/// key closest to it (a typo such as `server_port` silently does nothing).
pub fn unknown_websocket_keys(websocket: &Value) -> Vec<(String, Option<&'static str>)> {
    let Some(entries) = websocket.as_object() else {
        return Vec::new();
    };
    entries
        .keys()
        .filter(|key| !WEBSOCKET_KEYS.contains(&key.as_str()))
        .map(|key| (key.clone(), crate::config::nearest(key, WEBSOCKET_KEYS)))
        .collect()
}

/// A value of the `websocket` array as text (PHP arrays may hold numbers).
fn entry(websocket: &Value, key: &str) -> Option<String> {
    match websocket.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Where one side of a Flarum 2 forum connects: its browsers (`js-client-*`)
/// or its PHP side posting events (`php-client-*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RealtimeClient {
    pub host: String,
    pub port: u16,
    pub secure: bool,
}

/// Where `side` (`"js"` or `"php"`) connects, as flarum/realtime's
/// `Settings.php` decides: `{side}-client-host` (the forum url's host),
/// `{side}-client-port` (6001), `{side}-client-secure` (the url is https).
pub fn realtime_client(config: &ForumConfig, side: &str) -> RealtimeClient {
    let websocket = &config.websocket;
    let host = entry(websocket, &format!("{side}-client-host"))
        .or_else(|| config.host())
        .unwrap_or_else(|| "127.0.0.1".into());
    let port = entry(websocket, &format!("{side}-client-port"))
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or(6001);
    let secure = match websocket.get(format!("{side}-client-secure")) {
        Some(Value::Bool(b)) => *b,
        _ => config
            .url
            .as_deref()
            .is_some_and(|u| u.starts_with("https://")),
    };
    RealtimeClient {
        host: host.trim().to_owned(),
        port,
        secure,
    }
}

/// The daemon's settings as flarum-ws settings, with where each came from.
pub fn realtime_settings(config: &ForumConfig) -> Result<ForumLayer, ForumError> {
    let websocket = &config.websocket;
    let shown = config.path.display().to_string();
    let mut origins = BTreeMap::new();
    let mut from_config = |setting: &'static str, key: &str| -> Option<String> {
        let value = entry(websocket, key)?;
        origins.insert(setting, format!("{shown} ('websocket' => ['{key}' => …])"));
        Some(value)
    };
    let bad = |key: &str, value: &str, expected: &str| ForumError::Invalid {
        path: config.path.clone(),
        message: format!("'websocket' => ['{key}' => {value:?}]: expected {expected}"),
    };
    let host = config
        .host()
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    let server_host = from_config("host", "server-host");
    let port = match from_config("port", "server-port") {
        Some(port) => port
            .trim()
            .parse::<u16>()
            .map_err(|_| bad("server-port", &port, "a port number"))?,
        None => 6001,
    };
    let max_connections = match from_config("max_connections", "max-connections") {
        Some(n) => n
            .trim()
            .parse::<usize>()
            .map_err(|_| bad("max-connections", &n, "a number"))?,
        None => 1000,
    };
    let app_key = from_config("app_key", "app-key").unwrap_or_else(|| md5_hex(&host));
    let app_secret = from_config("app_secret", "app-secret")
        .unwrap_or_else(|| md5_hex(config.database.password.expose().trim()));
    let js_client_host = from_config("allowed_origins", "js-client-host");
    let derived = "flarum/realtime's default";
    for (setting, why) in [
        ("app_id", format!("{derived}: always 1")),
        (
            "app_key",
            format!("{derived}: md5 of the forum url's host ({host})"),
        ),
        (
            "app_secret",
            format!("{derived}: md5 of the database password in {shown}"),
        ),
        ("port", format!("{derived}: 6001")),
        ("max_connections", format!("{derived}: 1000")),
        (
            "max_connections_per_ip",
            "a tenth of max-connections, applied only once the server is nearly full (flarum/realtime has no per-address limit, so one address could take the last places)".to_owned(),
        ),
        (
            "trusted_proxies",
            "a proxy on this machine (nginx in front of the daemon's port) names the client".to_owned(),
        ),
        (
            "allowed_origins",
            format!("{derived}: the forum url's host"),
        ),
        (
            "require_origin",
            format!("{derived}: browsers must send an Origin"),
        ),
        (
            "client_events",
            format!("{derived}: client events are relayed"),
        ),
    ] {
        origins.entry(setting).or_insert(why);
    }
    let mut allowed = vec![host.to_ascii_lowercase()];
    if let Some(js_host) = js_client_host.map(|h| h.trim().to_ascii_lowercase())
        && !js_host.is_empty()
        && !allowed.contains(&js_host)
    {
        allowed.push(js_host);
    }
    allowed.retain(|h| !h.is_empty());
    if config.debug {
        origins.insert("verbose", format!("{shown} ('debug' => true)"));
    }
    let settings = PartialSettings {
        app_id: Some("1".into()),
        app_key: Some(app_key),
        app_secret: Some(Secret::new(app_secret)),
        host: server_host,
        port: Some(port),
        max_connections: Some(max_connections),
        max_connections_per_ip: Some((max_connections / 10).max(1)),
        trusted_proxies: Some(vec!["127.0.0.1".to_owned(), "::1".to_owned()]),
        allowed_origins: Some(allowed),
        require_origin: Some(true),
        client_events: Some(true),
        max_event_data_bytes: Some(256 * 1024),
        verbose: config.debug.then_some(true),
        ..Default::default()
    };
    Ok(ForumLayer { settings, origins })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_misspelt_websocket_key_is_named_with_the_nearest_known_one() {
        let websocket =
            serde_json::json!({"server_port": 6002, "server-host": "127.0.0.1", "colour": "red"});
        let mut unknown = unknown_websocket_keys(&websocket);
        unknown.sort();
        assert_eq!(
            unknown,
            vec![
                ("colour".to_owned(), None),
                ("server_port".to_owned(), Some("server-port"))
            ]
        );
    }

    #[test]
    fn the_enabled_extension_is_read_from_the_list() {
        assert_eq!(
            enabled_extension(Some(r#"["flarum-tags","flarum-realtime"]"#)).unwrap(),
            Extension::Realtime
        );
        assert_eq!(
            enabled_extension(Some(r#"["kyrne-websocket"]"#)).unwrap(),
            Extension::Kyrne
        );
        assert_eq!(enabled_extension(None).unwrap(), Extension::Kyrne);
        let both = enabled_extension(Some(r#"["kyrne-websocket","flarum-realtime"]"#));
        assert!(
            both.unwrap_err()
                .to_string()
                .contains("both realtime extensions")
        );
        let neither = enabled_extension(Some(r#"["flarum-tags"]"#));
        assert!(neither.unwrap_err().to_string().contains("kyrne-websocket"));
    }
}
