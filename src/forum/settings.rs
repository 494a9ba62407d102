//! The extension's rows of the settings table, turned into the same partial
//! settings every other source produces.

use std::collections::HashMap;

use super::ForumError;
use super::config_php::ForumConfig;
use crate::config::{PartialSettings, Secret};

/// What the forum sets, as a configuration source.
pub type ForumSettings = PartialSettings;

/// '', '0' and NULL are false; anything else is true (Flarum's switches).
fn switch(value: Option<&str>) -> Option<bool> {
    value.map(|v| !(v.is_empty() || v == "0"))
}

/// Builds the forum's partial settings from `(key, value)` rows.
pub fn settings_from_rows(
    rows: Vec<(String, Option<String>)>,
    config: &ForumConfig,
) -> Result<ForumSettings, ForumError> {
    let values: HashMap<String, String> = rows
        .into_iter()
        .filter_map(|(k, v)| Some((k, v?)))
        .collect();
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
    let invalid = |key: &str, value: &str, expected: &str| ForumError::Invalid {
        path: config.path.clone(),
        message: format!(
            "setting kyrne-websocket.{key} is {value:?}, expected {expected}; fix it on the extension's settings page"
        ),
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
    Ok(PartialSettings {
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
        ..Default::default()
    })
}
