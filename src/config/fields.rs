//! The one list of settings: YAML key, environment variable, type and
//! default, from which the partial struct, the variable parser and the
//! merge are generated.

use std::collections::BTreeMap;
use std::time::Duration;

use super::value::{FromVariable, Secret};
use super::{
    AppCredentials, ConfigError, Limits, LogFormat, Provenance, Resolved, Settings, Source,
    TlsFiles,
};

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

            /// Every setting's name and value as text (secrets redacted), in
            /// declaration order; `None` where this source is silent.
            pub fn describe(&self) -> Vec<(&'static str, Option<String>)> {
                vec![ $( (stringify!($field), self.$field.as_ref().map(|v| format!("{v:?}"))), )* ]
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
    /// A TLS proxy (nginx) sits in front: serve plain HTTP, bind 127.0.0.1.
    reverse_proxy: bool = "FLARUM_WS_REVERSE_PROXY",
    /// Full-chain certificate (PEM) for serving TLS.
    tls_cert: String = "FLARUM_WS_TLS_CERT",
    /// Private key (PEM) of the certificate.
    tls_key: String = "FLARUM_WS_TLS_KEY",
    /// Passphrase of an encrypted private key.
    tls_passphrase: Secret = "FLARUM_WS_TLS_PASSPHRASE",
    /// The certificate is self-signed (the server's own probes accept it).
    self_signed: bool = "FLARUM_WS_SELF_SIGNED",
    /// Host name browsers and the forum use to reach the server.
    app_host: String = "FLARUM_WS_APP_HOST",
    /// Seconds between rows of the forum's statistics widget.
    statistics_interval: u64 = "FLARUM_WS_STATISTICS_INTERVAL",
    /// Whether to write statistics rows to the forum database.
    statistics: bool = "FLARUM_WS_STATISTICS",
    /// Open websocket connections the server accepts in all.
    max_connections: usize = "FLARUM_WS_MAX_CONNECTIONS",
    /// Open websocket connections per client IP address.
    max_connections_per_ip: usize = "FLARUM_WS_MAX_CONNECTIONS_PER_IP",
    /// Channels one connection may be subscribed to at once.
    max_subscriptions_per_connection: usize = "FLARUM_WS_MAX_SUBSCRIPTIONS_PER_CONNECTION",
    /// Seconds a client has to send its request head (slowloris guard).
    handshake_timeout: u64 = "FLARUM_WS_HANDSHAKE_TIMEOUT",
    /// Browser origins allowed to connect (empty: any).
    allowed_origins: Vec<String> = "FLARUM_WS_ALLOWED_ORIGINS",
    /// Proxies whose X-Forwarded-For / X-Real-IP headers are believed.
    trusted_proxies: Vec<String> = "FLARUM_WS_TRUSTED_PROXIES",
    max_presence_members: usize = "FLARUM_WS_MAX_PRESENCE_MEMBERS",
    max_presence_user_info_bytes: usize = "FLARUM_WS_MAX_PRESENCE_USER_INFO_BYTES",
    max_presence_user_id_length: usize = "FLARUM_WS_MAX_PRESENCE_USER_ID_LENGTH",
    max_channel_name_length: usize = "FLARUM_WS_MAX_CHANNEL_NAME_LENGTH",
    max_event_name_length: usize = "FLARUM_WS_MAX_EVENT_NAME_LENGTH",
    max_event_data_bytes: usize = "FLARUM_WS_MAX_EVENT_DATA_BYTES",
    max_channels_per_event: usize = "FLARUM_WS_MAX_CHANNELS_PER_EVENT",
    max_batch_events: usize = "FLARUM_WS_MAX_BATCH_EVENTS",
    client_events_per_second: u32 = "FLARUM_WS_CLIENT_EVENTS_PER_SECOND",
    /// Signed HTTP API requests per second for the app's key (429 above it).
    api_requests_per_second: u32 = "FLARUM_WS_API_REQUESTS_PER_SECOND",
    max_message_bytes: usize = "FLARUM_WS_MAX_MESSAGE_BYTES",
    max_request_body_bytes: usize = "FLARUM_WS_MAX_REQUEST_BODY_BYTES",
    max_watchlist_size: usize = "FLARUM_WS_MAX_WATCHLIST_SIZE",
    /// Seconds a cache channel remembers its last event.
    cache_ttl: u64 = "FLARUM_WS_CACHE_TTL",
    /// Frames queued per socket before it counts as a slow consumer (4100).
    socket_queue_capacity: usize = "FLARUM_WS_SOCKET_QUEUE_CAPACITY",
    /// Token for /dashboard and /metrics (unset: a random one, printed at startup).
    admin_token: Secret = "FLARUM_WS_ADMIN_TOKEN",
    /// ADDRESS:PORT of a separate listener serving /metrics without a token.
    metrics_listen: String = "FLARUM_WS_METRICS_LISTEN",
    /// Log lines as `text` (for people) or `json` (for log shippers).
    log_format: String = "FLARUM_WS_LOG_FORMAT",
    /// Redis for running several nodes as one server (unset: one node).
    redis_url: Secret = "FLARUM_WS_REDIS_URL",
    /// Prefix of the Redis channel, so several forums can share one Redis.
    redis_prefix: String = "FLARUM_WS_REDIS_PREFIX",
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
/// Every default in one place, as the lowest-precedence source. The bind
/// address is missing: its default depends on `reverse_proxy`.
fn defaults() -> PartialSettings {
    PartialSettings {
        reverse_proxy: Some(false),
        port: Some(2083),
        client_events: Some(false),
        activity_timeout: Some(120),
        pong_timeout: Some(30),
        verbose: Some(false),
        self_signed: Some(false),
        statistics: Some(true),
        statistics_interval: Some(7200),
        max_connections: Some(50_000),
        max_connections_per_ip: Some(1_000),
        max_subscriptions_per_connection: Some(1_000),
        handshake_timeout: Some(10),
        max_presence_members: Some(10_000),
        max_presence_user_info_bytes: Some(1024),
        max_presence_user_id_length: Some(128),
        max_channel_name_length: Some(200),
        max_event_name_length: Some(200),
        max_event_data_bytes: Some(10 * 1024),
        max_channels_per_event: Some(100),
        max_batch_events: Some(10),
        client_events_per_second: Some(10),
        api_requests_per_second: Some(1000),
        max_message_bytes: Some(64 * 1024),
        max_request_body_bytes: Some(256 * 1024),
        max_watchlist_size: Some(100),
        cache_ttl: Some(1800),
        socket_queue_capacity: Some(512),
        log_format: Some("text".into()),
        redis_prefix: Some("flarum-ws".into()),
        ..Default::default()
    }
}

/// Where credentials can come from, for the missing-credentials message.
const STANDALONE_HINT: &str = "Set them with the variables FLARUM_WS_APP_ID, FLARUM_WS_APP_KEY and \
    FLARUM_WS_APP_SECRET (also read from a .env file in the working directory), or in a YAML file \
    passed with --config FILE or FLARUM_WS_CONFIG (keys app_id, app_key, app_secret; see \
    contrib/flarum-ws.example.yaml), or run flarum-ws from a Flarum forum's root directory";
const FORUM_HINT: &str = "The forum's settings table has no kyrne-websocket.app_id, app_key or app_secret: \
    enable the websocket extension in the admin panel and save its settings page once. Or set them \
    with the variables FLARUM_WS_APP_ID, FLARUM_WS_APP_KEY and FLARUM_WS_APP_SECRET, or in a YAML \
    file passed with --config (keys app_id, app_key, app_secret)";

pub(super) fn into_settings(
    mut p: PartialSettings,
    mut provenance: Provenance,
    from_forum: bool,
) -> Result<Resolved, ConfigError> {
    p.layer_under(defaults(), &Source::Default, &mut provenance);
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
            hint: if from_forum {
                FORUM_HINT
            } else {
                STANDALONE_HINT
            },
        });
    }
    let app = AppCredentials {
        id: p.app_id.clone().unwrap_or_default(),
        key: p.app_key.clone().unwrap_or_default(),
        secret: p.app_secret.clone().unwrap_or_else(|| Secret::new("")),
    };
    let reverse_proxy = p.reverse_proxy.unwrap_or_default();
    // Behind a local proxy the port must not be reachable from outside.
    let default_host = if reverse_proxy {
        "127.0.0.1"
    } else {
        "0.0.0.0"
    };
    let host = match p.host.clone() {
        Some(host) => host,
        None => {
            provenance.insert("host", Source::Default);
            p.host = Some(default_host.to_owned());
            default_host.to_owned()
        }
    };
    let port = p.port.unwrap_or_default();
    let client_events = p.client_events.unwrap_or_default();
    let activity_timeout = p.activity_timeout.unwrap_or_default();
    let pong_timeout = p.pong_timeout.unwrap_or_default();
    let verbose = p.verbose.unwrap_or_default();
    let self_signed = p.self_signed.unwrap_or_default();
    let statistics = p.statistics.unwrap_or_default();
    let statistics_interval = p.statistics_interval.unwrap_or_default();
    // TLS is wanted exactly when a certificate is set and no proxy terminates it.
    let tls = match (p.tls_cert.clone(), reverse_proxy) {
        (Some(cert), false) if !cert.is_empty() => Some(TlsFiles {
            cert: cert.into(),
            key: p.tls_key.clone().unwrap_or_default().into(),
            passphrase: p.tls_passphrase.clone().filter(|s| !s.expose().is_empty()),
        }),
        _ => None,
    };
    let trusted_proxies = match p.trusted_proxies.clone() {
        Some(list) => list,
        // The local reverse proxy is trusted to say who the client is.
        None if reverse_proxy => vec!["127.0.0.1".to_owned(), "::1".to_owned()],
        None => Vec::new(),
    };
    let mut trusted = Vec::new();
    for entry in &trusted_proxies {
        let ip = entry
            .parse::<std::net::IpAddr>()
            .map_err(|_| ConfigError::InvalidSetting {
                name: "trusted_proxies",
                origin: provenance
                    .get("trusted_proxies")
                    .cloned()
                    .unwrap_or(Source::Default),
                problem: format!("{entry:?} is not an IP address"),
            })?;
        trusted.push(ip);
    }
    let allowed_origins: Vec<String> = p
        .allowed_origins
        .clone()
        .unwrap_or_default()
        .iter()
        .map(|o| o.trim_end_matches('/').to_ascii_lowercase())
        .collect();
    let limits = Limits {
        max_connections: p.max_connections.unwrap_or_default(),
        max_connections_per_ip: p.max_connections_per_ip.unwrap_or_default(),
        max_subscriptions_per_connection: p.max_subscriptions_per_connection.unwrap_or_default(),
        handshake_timeout: Duration::from_secs(p.handshake_timeout.unwrap_or_default()),
        max_presence_members: p.max_presence_members.unwrap_or_default(),
        max_presence_user_info_bytes: p.max_presence_user_info_bytes.unwrap_or_default(),
        max_presence_user_id_length: p.max_presence_user_id_length.unwrap_or_default(),
        max_channel_name_length: p.max_channel_name_length.unwrap_or_default(),
        max_event_name_length: p.max_event_name_length.unwrap_or_default(),
        max_event_data_bytes: p.max_event_data_bytes.unwrap_or_default(),
        max_channels_per_event: p.max_channels_per_event.unwrap_or_default(),
        max_batch_events: p.max_batch_events.unwrap_or_default(),
        client_events_per_second: p.client_events_per_second.unwrap_or_default(),
        api_requests_per_second: p.api_requests_per_second.unwrap_or_default(),
        max_message_bytes: p.max_message_bytes.unwrap_or_default(),
        max_request_body_bytes: p.max_request_body_bytes.unwrap_or_default(),
        max_watchlist_size: p.max_watchlist_size.unwrap_or_default(),
        cache_ttl: Duration::from_secs(p.cache_ttl.unwrap_or_default()),
        socket_queue_capacity: p.socket_queue_capacity.unwrap_or_default(),
    };
    let pv = &provenance;
    positive(activity_timeout, "activity_timeout", pv)?;
    positive(pong_timeout, "pong_timeout", pv)?;
    positive(statistics_interval, "statistics_interval", pv)?;
    positive(limits.max_presence_members, "max_presence_members", pv)?;
    positive(limits.max_connections, "max_connections", pv)?;
    positive(limits.max_connections_per_ip, "max_connections_per_ip", pv)?;
    positive(
        limits.max_subscriptions_per_connection,
        "max_subscriptions_per_connection",
        pv,
    )?;
    positive(limits.handshake_timeout, "handshake_timeout", pv)?;
    positive(
        limits.max_channel_name_length,
        "max_channel_name_length",
        pv,
    )?;
    positive(limits.max_event_name_length, "max_event_name_length", pv)?;
    positive(limits.max_event_data_bytes, "max_event_data_bytes", pv)?;
    positive(limits.max_channels_per_event, "max_channels_per_event", pv)?;
    positive(limits.max_batch_events, "max_batch_events", pv)?;
    positive(
        limits.api_requests_per_second,
        "api_requests_per_second",
        pv,
    )?;
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
    let log_format = match p.log_format.as_deref().unwrap_or_default() {
        "text" => LogFormat::Text,
        "json" => LogFormat::Json,
        other => {
            return Err(ConfigError::InvalidSetting {
                name: "log_format",
                origin: pv.get("log_format").cloned().unwrap_or(Source::Default),
                problem: format!("{other:?} is not a log format (use text or json)"),
            });
        }
    };
    let metrics_listen =
        match p.metrics_listen.as_deref() {
            None | Some("") => None,
            Some(text) => Some(text.parse::<std::net::SocketAddr>().map_err(|_| {
                ConfigError::InvalidSetting {
                    name: "metrics_listen",
                    origin: pv.get("metrics_listen").cloned().unwrap_or(Source::Default),
                    problem: format!("{text:?} is not ADDRESS:PORT (for example 127.0.0.1:9601)"),
                }
            })?),
        };
    Ok(Resolved {
        settings: Settings {
            app,
            host,
            port,
            client_events,
            activity_timeout: Duration::from_secs(activity_timeout),
            pong_timeout: Duration::from_secs(pong_timeout),
            reverse_proxy,
            tls,
            self_signed,
            app_host: p.app_host.clone().filter(|h| !h.is_empty()),
            statistics,
            statistics_interval: Duration::from_secs(statistics_interval),
            allowed_origins,
            trusted_proxies: trusted,
            verbose,
            limits,
            admin_token: p.admin_token.clone().filter(|t| !t.expose().is_empty()),
            metrics_listen,
            log_format,
            redis_url: p.redis_url.clone().filter(|u| !u.expose().is_empty()),
            redis_prefix: p.redis_prefix.clone().unwrap_or_default(),
        },
        provenance,
        effective: p,
    })
}
