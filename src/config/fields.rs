//! The one list of settings: YAML key, environment variable, type and
//! default, from which the partial struct, the variable parser and the
//! merge are generated.

use std::collections::BTreeMap;
use std::time::Duration;

use super::value::{FromVariable, Secret};
use super::{AppCredentials, ConfigError, Limits, Provenance, Resolved, Settings, Source};

macro_rules! settings {
    ($( $(#[doc = $doc:literal])* $field:ident : $ty:ty = $var:literal ),* $(,)?) => {
        /// Settings from one source; `None` where that source is silent.
        #[derive(Debug, Default, Clone, PartialEq, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct PartialSettings {
            $( $(#[doc = $doc])* pub $field: Option<$ty>, )*
        }

        /// Every setting's YAML key and environment variable.
        pub const VARIABLES: &[(&str, &str)] = &[ $( (stringify!($field), $var), )* ];

        impl PartialSettings {
            /// Reads `FLARUM_WS_*` variables (from the environment or a `.env`
            /// file); `origin` names the source in errors.
            pub fn from_variables(
                vars: &BTreeMap<String, String>,
                origin: &str,
            ) -> Result<Self, ConfigError> {
                let mut partial = Self::default();
                $(
                    if let Some(text) = vars.get($var) {
                        partial.$field = Some(<$ty>::from_variable(text).map_err(|problem| {
                            ConfigError::InvalidVariable {
                                origin: origin.to_owned(),
                                name: $var.to_owned(),
                                value: if stringify!($ty) == "Secret" { "<redacted>".into() } else { text.clone() },
                                problem,
                            }
                        })?);
                    }
                )*
                Ok(partial)
            }

            /// Fills every field still unset from `lower`, recording the source.
            pub fn layer_under(&mut self, lower: Self, source: &Source, provenance: &mut Provenance) {
                $(
                    if self.$field.is_none() && lower.$field.is_some() {
                        self.$field = lower.$field;
                        provenance.insert(stringify!($field), source.clone());
                    }
                )*
            }
        }
    };
}

settings! {
    /// Pusher app id (numeric for Flarum).
    app_id: String = "FLARUM_WS_APP_ID",
    /// Public key browsers connect with (`/app/{key}`).
    app_key: String = "FLARUM_WS_APP_KEY",
    /// Secret signing channel auth and API requests.
    app_secret: Secret = "FLARUM_WS_APP_SECRET",
    /// Bind address.
    host: String = "FLARUM_WS_HOST",
    /// Port for the websocket and HTTP API (0 = any free port).
    port: u16 = "FLARUM_WS_PORT",
    /// Whether clients may send `client-*` events.
    client_events: bool = "FLARUM_WS_CLIENT_EVENTS",
    /// Seconds of silence before the server pings a client.
    activity_timeout: u64 = "FLARUM_WS_ACTIVITY_TIMEOUT",
    /// Seconds a client has to answer the server's ping before 4201.
    pong_timeout: u64 = "FLARUM_WS_PONG_TIMEOUT",
    /// Log every connection, subscription and message.
    verbose: bool = "FLARUM_WS_VERBOSE",
    max_presence_members: usize = "FLARUM_WS_MAX_PRESENCE_MEMBERS",
    max_presence_user_info_bytes: usize = "FLARUM_WS_MAX_PRESENCE_USER_INFO_BYTES",
    max_presence_user_id_length: usize = "FLARUM_WS_MAX_PRESENCE_USER_ID_LENGTH",
    max_channel_name_length: usize = "FLARUM_WS_MAX_CHANNEL_NAME_LENGTH",
    max_event_name_length: usize = "FLARUM_WS_MAX_EVENT_NAME_LENGTH",
    max_event_data_bytes: usize = "FLARUM_WS_MAX_EVENT_DATA_BYTES",
    max_channels_per_event: usize = "FLARUM_WS_MAX_CHANNELS_PER_EVENT",
    max_batch_events: usize = "FLARUM_WS_MAX_BATCH_EVENTS",
    client_events_per_second: u32 = "FLARUM_WS_CLIENT_EVENTS_PER_SECOND",
    max_message_bytes: usize = "FLARUM_WS_MAX_MESSAGE_BYTES",
    max_request_body_bytes: usize = "FLARUM_WS_MAX_REQUEST_BODY_BYTES",
    max_watchlist_size: usize = "FLARUM_WS_MAX_WATCHLIST_SIZE",
    /// Seconds a cache channel remembers its last event.
    cache_ttl: u64 = "FLARUM_WS_CACHE_TTL",
    /// Frames queued per socket before it counts as a slow consumer (4100).
    socket_queue_capacity: usize = "FLARUM_WS_SOCKET_QUEUE_CAPACITY",
}

/// Takes a value or its default, recording `Default` as its source.
fn or_default<T>(
    value: Option<T>,
    name: &'static str,
    default: T,
    provenance: &mut Provenance,
) -> T {
    value.unwrap_or_else(|| {
        provenance.insert(name, Source::Default);
        default
    })
}

/// Rejects zero for limits where zero would make the server useless.
fn positive<T: PartialEq + Default>(
    value: T,
    name: &'static str,
    provenance: &Provenance,
) -> Result<T, ConfigError> {
    if value == T::default() {
        return Err(ConfigError::InvalidSetting {
            name,
            origin: provenance.get(name).cloned().unwrap_or(Source::Default),
            problem: "must be greater than 0".into(),
        });
    }
    Ok(value)
}

/// Applies defaults and validation to the merged settings.
pub(super) fn into_settings(
    p: PartialSettings,
    mut provenance: Provenance,
) -> Result<Resolved, ConfigError> {
    let missing: Vec<&str> = [
        (
            "app_id",
            p.app_id.as_ref().is_none_or(|v| v.trim().is_empty()),
        ),
        (
            "app_key",
            p.app_key.as_ref().is_none_or(|v| v.trim().is_empty()),
        ),
        (
            "app_secret",
            p.app_secret.as_ref().is_none_or(|v| v.expose().is_empty()),
        ),
    ]
    .into_iter()
    .filter_map(|(name, missing)| missing.then_some(name))
    .collect();
    if !missing.is_empty() {
        return Err(ConfigError::MissingCredentials {
            missing: missing.join(", "),
        });
    }
    let app = AppCredentials {
        id: p.app_id.unwrap_or_default(),
        key: p.app_key.unwrap_or_default(),
        secret: p.app_secret.unwrap_or_else(|| Secret::new("")),
    };
    let pv = &mut provenance;
    let host = or_default(p.host, "host", "0.0.0.0".to_owned(), pv);
    let port = or_default(p.port, "port", 2083, pv);
    let client_events = or_default(p.client_events, "client_events", false, pv);
    let activity_timeout = or_default(p.activity_timeout, "activity_timeout", 120, pv);
    let pong_timeout = or_default(p.pong_timeout, "pong_timeout", 30, pv);
    let verbose = or_default(p.verbose, "verbose", false, pv);
    let limits = Limits {
        max_presence_members: or_default(
            p.max_presence_members,
            "max_presence_members",
            10_000,
            pv,
        ),
        max_presence_user_info_bytes: or_default(
            p.max_presence_user_info_bytes,
            "max_presence_user_info_bytes",
            1024,
            pv,
        ),
        max_presence_user_id_length: or_default(
            p.max_presence_user_id_length,
            "max_presence_user_id_length",
            128,
            pv,
        ),
        max_channel_name_length: or_default(
            p.max_channel_name_length,
            "max_channel_name_length",
            200,
            pv,
        ),
        max_event_name_length: or_default(
            p.max_event_name_length,
            "max_event_name_length",
            200,
            pv,
        ),
        max_event_data_bytes: or_default(
            p.max_event_data_bytes,
            "max_event_data_bytes",
            10 * 1024,
            pv,
        ),
        max_channels_per_event: or_default(
            p.max_channels_per_event,
            "max_channels_per_event",
            100,
            pv,
        ),
        max_batch_events: or_default(p.max_batch_events, "max_batch_events", 10, pv),
        client_events_per_second: or_default(
            p.client_events_per_second,
            "client_events_per_second",
            10,
            pv,
        ),
        max_message_bytes: or_default(p.max_message_bytes, "max_message_bytes", 64 * 1024, pv),
        max_request_body_bytes: or_default(
            p.max_request_body_bytes,
            "max_request_body_bytes",
            256 * 1024,
            pv,
        ),
        max_watchlist_size: or_default(p.max_watchlist_size, "max_watchlist_size", 100, pv),
        cache_ttl: Duration::from_secs(or_default(p.cache_ttl, "cache_ttl", 1800, pv)),
        socket_queue_capacity: or_default(
            p.socket_queue_capacity,
            "socket_queue_capacity",
            512,
            pv,
        ),
    };
    let pv = &provenance;
    positive(activity_timeout, "activity_timeout", pv)?;
    positive(pong_timeout, "pong_timeout", pv)?;
    positive(limits.max_presence_members, "max_presence_members", pv)?;
    positive(
        limits.max_channel_name_length,
        "max_channel_name_length",
        pv,
    )?;
    positive(limits.max_event_name_length, "max_event_name_length", pv)?;
    positive(limits.max_event_data_bytes, "max_event_data_bytes", pv)?;
    positive(limits.max_channels_per_event, "max_channels_per_event", pv)?;
    positive(limits.max_batch_events, "max_batch_events", pv)?;
    positive(limits.max_message_bytes, "max_message_bytes", pv)?;
    positive(limits.max_request_body_bytes, "max_request_body_bytes", pv)?;
    positive(limits.socket_queue_capacity, "socket_queue_capacity", pv)?;
    if host.parse::<std::net::IpAddr>().is_err() {
        return Err(ConfigError::InvalidSetting {
            name: "host",
            origin: pv.get("host").cloned().unwrap_or(Source::Default),
            problem: format!(
                "{host:?} is not an IP address (use 0.0.0.0 for all IPv4 interfaces, :: for all IPv6, 127.0.0.1 for this machine only)"
            ),
        });
    }
    Ok(Resolved {
        settings: Settings {
            app,
            host,
            port,
            client_events,
            activity_timeout: Duration::from_secs(activity_timeout),
            pong_timeout: Duration::from_secs(pong_timeout),
            verbose,
            limits,
        },
        provenance,
    })
}
