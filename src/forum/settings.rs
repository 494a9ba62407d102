//! The extension's rows of the settings table, turned into the same partial
//! settings every other source produces.

use std::collections::{BTreeMap, HashMap};

use super::ForumError;
use super::config_php::ForumConfig;
use super::realtime::{Extension, enabled_extension, realtime_settings};
use crate::config::{ForumLayer, PartialSettings, Secret};

/// What the forum's settings table says: the realtime extension it runs,
/// that extension's settings as a configuration source, and the forum-wide
/// settings flarum-ws acts on.
#[derive(Debug, Clone)]
pub struct ForumSettings {
    pub extension: Extension,
    pub layer: ForumLayer,
    /// `extensions_enabled` as stored (a JSON list), to notice toggles.
    pub extensions_enabled: Option<String>,
    /// `display_name_driver`: `username` (default) or `nickname`.
    pub display_name_driver: Option<String>,
    /// `flarum-realtime.index-typing-indicator-restricted`.
    pub index_typing_restricted: bool,
    /// `kyrne-websocket.force_secure`, the Kyrne extension's "Force secure"
    /// switch: browsers and the forum's PHP side use TLS (wss://, https://)
    /// on the app host and port even when the forum's URL is http. flarum-ws
    /// never serves TLS because of it; `check` holds the port to it.
    pub force_secure: bool,
}

/// Each setting the extension's page sets, and its key in the settings
/// table (`kyrne-websocket.` omitted).
const KEYS: [(&str, &[&str]); 10] = [
    ("app_id", &["app_id"]),
    ("app_key", &["app_key"]),
    ("app_secret", &["app_secret"]),
    ("port", &["app_port"]),
    ("reverse_proxy", &["reverse_proxy"]),
    ("tls_cert", &["local_cert"]),
    ("tls_key", &["local_pk"]),
    ("tls_passphrase", &["cert_passphrase", "passphrase"]),
    ("self_signed", &["cert_self_signed"]),
    ("app_host", &["app_host"]),
];

/// '', '0' and NULL are false; anything else is true (Flarum's switches).
fn switch(value: Option<&str>) -> Option<bool> {
    value.map(|v| !(v.is_empty() || v == "0"))
}

/// The origin (`scheme://host[:port]`) of the forum's `url`: the pages
/// browsers open websockets from, and so the only origin allowed by
/// default when serving a forum.
pub fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.trim().split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    if authority.is_empty() || !matches!(scheme, "http" | "https") {
        return None;
    }
    Some(format!("{scheme}://{authority}").to_ascii_lowercase())
}

/// Builds the forum's settings from `(key, value)` rows of its settings
/// table: the enabled realtime extension decides how.
pub fn settings_from_rows(
    rows: Vec<(String, Option<String>)>,
    config: &ForumConfig,
) -> Result<ForumSettings, ForumError> {
    let values: HashMap<String, String> = rows
        .into_iter()
        .filter_map(|(k, v)| Some((k, v?)))
        .collect();
    let extensions_enabled = values.get("extensions_enabled").cloned();
    let extension = enabled_extension(extensions_enabled.as_deref())?;
    let layer = match extension {
        Extension::Kyrne => kyrne_settings(&values, config)?,
        Extension::Realtime => realtime_settings(config)?,
    };
    Ok(ForumSettings {
        extension,
        layer,
        extensions_enabled,
        display_name_driver: values.get("display_name_driver").cloned(),
        index_typing_restricted: switch(
            values
                .get("flarum-realtime.index-typing-indicator-restricted")
                .map(String::as_str),
        )
        .unwrap_or(false),
        force_secure: extension == Extension::Kyrne
            && switch(
                values
                    .get("kyrne-websocket.force_secure")
                    .map(String::as_str),
            )
            .unwrap_or(false),
    })
}

/// The Kyrne extension's settings page, as partial settings.
fn kyrne_settings(
    values: &HashMap<String, String>,
    config: &ForumConfig,
) -> Result<ForumLayer, ForumError> {
    let get = |key: &str| {
        values
            .get(&format!("kyrne-websocket.{key}"))
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    };
    let with_fallback = |key: &str| {
        get(key).or_else(|| {
            values
                .get(&format!("flarum-pusher.{key}"))
                .map(|v| v.trim())
                .filter(|v| !v.is_empty())
        })
    };
    let invalid = |key: &str, value: &str, expected: &str| ForumError::BadSetting {
        key: format!("kyrne-websocket.{key}"),
        value: value.to_owned(),
        expected: expected.to_owned(),
    };
    let port = match get("app_port") {
        Some(port) => Some(
            port.parse::<u16>()
                .map_err(|_| invalid("app_port", port, "a port number"))?,
        ),
        None => None,
    };
    let statistics_interval = match get("app_statistics-interval") {
        Some(seconds) => Some(
            seconds
                .parse::<u64>()
                .map_err(|_| invalid("app_statistics-interval", seconds, "a number of seconds"))?,
        ),
        None => None,
    };
    let table = format!("{}settings", config.database.prefix);
    let mut origins = BTreeMap::new();
    for (setting, keys) in KEYS {
        let key = keys
            .iter()
            .map(|key| format!("kyrne-websocket.{key}"))
            .chain(
                ["app_id", "app_key", "app_secret"]
                    .contains(&setting)
                    .then(|| format!("flarum-pusher.{setting}")),
            )
            .find(|key| values.get(key).is_some_and(|v| !v.trim().is_empty()));
        if let Some(key) = key {
            origins.insert(setting, format!("settings table {table} (key {key})"));
        }
    }
    origins.insert(
        "statistics_interval",
        format!("settings table {table} (key kyrne-websocket.app_statistics-interval)"),
    );
    origins.insert(
        "verbose",
        format!("{} ('debug' => true)", config.path.display()),
    );
    let forum_origin = config.url.as_deref().and_then(origin_of);
    if forum_origin.is_some() {
        origins.insert(
            "allowed_origins",
            format!("the forum's url in {}", config.path.display()),
        );
    }
    let settings = PartialSettings {
        app_id: with_fallback("app_id").map(str::to_owned),
        app_key: with_fallback("app_key").map(str::to_owned),
        app_secret: with_fallback("app_secret").map(Secret::new),
        port,
        reverse_proxy: switch(
            values
                .get("kyrne-websocket.reverse_proxy")
                .map(String::as_str),
        ),
        tls_cert: get("local_cert").map(str::to_owned),
        tls_key: get("local_pk").map(str::to_owned),
        tls_passphrase: get("cert_passphrase")
            .or_else(|| get("passphrase"))
            .map(Secret::new),
        self_signed: switch(
            values
                .get("kyrne-websocket.cert_self_signed")
                .map(String::as_str),
        ),
        app_host: get("app_host").map(str::to_owned),
        statistics_interval,
        verbose: config.debug.then_some(true),
        allowed_origins: forum_origin.map(|origin| vec![origin]),
        ..Default::default()
    };
    Ok(ForumLayer { settings, origins })
}
