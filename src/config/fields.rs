//! The one list of settings: YAML key, environment variable, type, help,
//! default and allowed range, from which the partial struct, the variable
//! parser, the merge, the defaults, the range checks and the documented
//! list ([`ROWS`]) are generated. `into_settings` keeps only the rules that
//! involve several settings.

use std::collections::BTreeMap;
use std::ops::{Bound, RangeBounds};
use std::time::Duration;

use super::value::{FromVariable, Secret};
use super::webhook::{WebhookList, WebhookTarget};
use super::{
    AppCredentials, ConfigError, Limits, LogFormat, Provenance, Resolved, Settings, Source,
    TlsFiles,
};

macro_rules! settings {
    ($(
        $(#[doc = $doc:literal])*
        $field:ident : $ty:ty = $var:literal
        $({ default: $default:expr $(, range: $range:expr)? $(,)? })?
        $(=> $restart:ident)?
    ),* $(,)?) => {
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

            /// Whether `key`'s value differs between `self` and `other`.
            pub fn differs(&self, other: &Self, key: &str) -> bool {
                $( if key == stringify!($field) { return self.$field != other.$field; } )*
                false
            }

            /// Takes `key`'s value from `other`.
            pub fn keep(&mut self, other: &Self, key: &str) {
                $( if key == stringify!($field) { self.$field = other.$field.clone(); } )*
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

        /// Every default, as the lowest-precedence source. The bind
        /// address is missing: its default depends on `reverse_proxy`.
        pub fn defaults() -> PartialSettings {
            let mut partial = PartialSettings::default();
            $( $( partial.$field = Some($default); )? )*
            partial
        }

        /// Refuses a value outside its row's range, naming where it came from.
        fn check_ranges(p: &PartialSettings, provenance: &Provenance) -> Result<(), ConfigError> {
            $( $( $(
                if let Some(value) = &p.$field {
                    within(value, $range, stringify!($field), provenance)?;
                }
            )? )? )*
            Ok(())
        }

        /// Each setting's YAML key, variable, description and range, in order.
        pub const ROWS: &[SettingRow] = &[ $( SettingRow {
            key: stringify!($field),
            variable: $var,
            help: concat!($($doc),*),
            range: source_text!($($($range)?)?),
            restart: restart_flag!($($restart)?),
        }, )* ];
    };
}

/// Whether a row says `=> restart`.
macro_rules! restart_flag {
    () => {
        false
    };
    (restart) => {
        true
    };
}

/// The source text of an optional part of a row.
macro_rules! source_text {
    () => {
        None
    };
    ($part:expr) => {
        Some(stringify!($part))
    };
}

/// One setting as the documentation shows it.
#[derive(Debug, Clone, Copy)]
pub struct SettingRow {
    pub key: &'static str,
    pub variable: &'static str,
    /// The row's doc comment.
    pub help: &'static str,
    /// The allowed range as written in the row (`1..=3600`, `1..`).
    pub range: Option<&'static str>,
    /// Whether a changed value takes effect only when the server starts
    /// again (`=> restart`): what is bound, opened or started once at
    /// startup. A reload keeps serving the old value and says so.
    pub restart: bool,
}

/// The allowed range of `name`'s value, as an error when it is outside.
fn within<T: PartialOrd + std::fmt::Display>(
    value: &T,
    range: impl RangeBounds<T>,
    name: &'static str,
    provenance: &Provenance,
) -> Result<(), ConfigError> {
    if range.contains(value) {
        return Ok(());
    }
    let allowed = match (range.start_bound(), range.end_bound()) {
        (Bound::Included(low), Bound::Included(high)) => format!("between {low} and {high}"),
        (Bound::Included(low), _) => format!("{low} or more"),
        (_, Bound::Included(high)) => format!("{high} or less"),
        _ => "in range".to_owned(),
    };
    Err(ConfigError::InvalidSetting {
        name,
        origin: provenance.get(name).cloned().unwrap_or(Source::Default),
        problem: format!("is {value}; it must be {allowed}"),
    })
}

settings! {
    /// Pusher app id (numeric for Flarum).
    app_id: String = "FLARUM_WS_APP_ID",
    /// Public key browsers connect with (`/app/{key}`).
    app_key: String = "FLARUM_WS_APP_KEY",
    /// Secret signing channel auth and API requests.
    app_secret: Secret = "FLARUM_WS_APP_SECRET",
    /// Bind address.
    host: String = "FLARUM_WS_HOST" => restart,
    /// Port for the websocket and HTTP API (0 = any free port).
    port: u16 = "FLARUM_WS_PORT" { default: 2083 } => restart,
    /// Whether clients may send `client-*` events.
    client_events: bool = "FLARUM_WS_CLIENT_EVENTS" { default: false },
    /// Seconds of silence before the server pings a client; pusher-js is
    /// told the same and pings the server after that much silence. 30, as
    /// both PHP daemons: an idle connection then carries traffic well inside
    /// the 60 s read timeout of the proxies admins already run.
    activity_timeout: u64 = "FLARUM_WS_ACTIVITY_TIMEOUT" { default: 30, range: 1..=3600 },
    /// Seconds a client has to answer the server's ping before 4201; also how
    /// long a write may make no progress before a client that stopped
    /// reading is dropped (4100).
    pong_timeout: u64 = "FLARUM_WS_PONG_TIMEOUT" { default: 30, range: 1..=3600 },
    /// Log every connection, subscription and message.
    verbose: bool = "FLARUM_WS_VERBOSE" { default: false } => restart,
    /// A TLS proxy (nginx) sits in front: serve plain HTTP, bind 127.0.0.1.
    reverse_proxy: bool = "FLARUM_WS_REVERSE_PROXY" { default: false } => restart,
    /// Full-chain certificate (PEM) for serving TLS.
    tls_cert: String = "FLARUM_WS_TLS_CERT" => restart,
    /// Private key (PEM) of the certificate.
    tls_key: String = "FLARUM_WS_TLS_KEY" => restart,
    /// Passphrase of an encrypted private key.
    tls_passphrase: Secret = "FLARUM_WS_TLS_PASSPHRASE" => restart,
    /// The certificate is self-signed (the server's own probes accept it).
    self_signed: bool = "FLARUM_WS_SELF_SIGNED" { default: false },
    /// Host name browsers and the forum use to reach the server.
    app_host: String = "FLARUM_WS_APP_HOST",
    /// Seconds between rows of the forum's statistics widget.
    statistics_interval: u64 = "FLARUM_WS_STATISTICS_INTERVAL" { default: 7200, range: 1..=2_592_000 } => restart,
    /// Whether to write statistics rows to the forum database.
    statistics: bool = "FLARUM_WS_STATISTICS" { default: true } => restart,
    /// Open websocket connections the server accepts in all.
    max_connections: usize = "FLARUM_WS_MAX_CONNECTIONS" { default: 50_000, range: 1.. },
    /// Open websocket connections per client IP address; also open HTTP
    /// connections per peer address that is not a trusted proxy.
    max_connections_per_ip: usize = "FLARUM_WS_MAX_CONNECTIONS_PER_IP" { default: 1_000, range: 1.. },
    /// Channels one connection may be subscribed to at once.
    max_subscriptions_per_connection: usize = "FLARUM_WS_MAX_SUBSCRIPTIONS_PER_CONNECTION" { default: 1_000, range: 1.. },
    /// Seconds a client has to send its request head, and then to complete
    /// its request, body included (408 after it).
    handshake_timeout: u64 = "FLARUM_WS_HANDSHAKE_TIMEOUT" { default: 10, range: 1..=3600 },
    /// Browser origins allowed to connect, e.g. `https://forum.example`
    /// (`*`: any). Run from a forum, the default is the forum's url; alone,
    /// any origin.
    allowed_origins: Vec<String> = "FLARUM_WS_ALLOWED_ORIGINS",
    /// Refuse websockets that send no Origin header (browsers always send
    /// one). On for Flarum 2 forums, as flarum/realtime does.
    require_origin: bool = "FLARUM_WS_REQUIRE_ORIGIN" { default: false },
    /// Proxies whose X-Forwarded-For / X-Real-IP headers are believed.
    trusted_proxies: Vec<String> = "FLARUM_WS_TRUSTED_PROXIES",
    /// Members one presence channel may hold.
    max_presence_members: usize = "FLARUM_WS_MAX_PRESENCE_MEMBERS" { default: 10_000, range: 1.. },
    /// Bytes of `user_info` one presence member may carry.
    max_presence_user_info_bytes: usize = "FLARUM_WS_MAX_PRESENCE_USER_INFO_BYTES" { default: 1024 },
    /// Characters of a presence `user_id`.
    max_presence_user_id_length: usize = "FLARUM_WS_MAX_PRESENCE_USER_ID_LENGTH" { default: 128 },
    /// Characters of a channel name.
    max_channel_name_length: usize = "FLARUM_WS_MAX_CHANNEL_NAME_LENGTH" { default: 200, range: 1.. },
    /// Characters of an event name.
    max_event_name_length: usize = "FLARUM_WS_MAX_EVENT_NAME_LENGTH" { default: 200, range: 1.. },
    /// Bytes of one event's data.
    max_event_data_bytes: usize = "FLARUM_WS_MAX_EVENT_DATA_BYTES" { default: 10 * 1024, range: 1.. },
    /// Channels one API event may name.
    max_channels_per_event: usize = "FLARUM_WS_MAX_CHANNELS_PER_EVENT" { default: 100, range: 1.. },
    /// Events in one `batch_events` request.
    max_batch_events: usize = "FLARUM_WS_MAX_BATCH_EVENTS" { default: 10, range: 1.. },
    /// Client events one connection may send per second (4301 above it).
    client_events_per_second: u32 = "FLARUM_WS_CLIENT_EVENTS_PER_SECOND" { default: 10 },
    /// Signed HTTP API requests per second for the app's key (429 above it).
    api_requests_per_second: u32 = "FLARUM_WS_API_REQUESTS_PER_SECOND" { default: 1000, range: 1.. },
    /// Bytes of one websocket message from a client (1009 above it).
    max_message_bytes: usize = "FLARUM_WS_MAX_MESSAGE_BYTES" { default: 64 * 1024, range: 1.. },
    /// Bytes of one HTTP API request body (413 above it).
    max_request_body_bytes: usize = "FLARUM_WS_MAX_REQUEST_BODY_BYTES" { default: 256 * 1024, range: 1.. },
    /// Users in one signin's watchlist (4302 above it).
    max_watchlist_size: usize = "FLARUM_WS_MAX_WATCHLIST_SIZE" { default: 100 },
    /// Seconds a cache channel remembers its last event.
    cache_ttl: u64 = "FLARUM_WS_CACHE_TTL" { default: 1800, range: 1..=604_800 },
    /// Cache channels holding an event at once; the oldest is forgotten first.
    max_cached_channels: usize = "FLARUM_WS_MAX_CACHED_CHANNELS" { default: 10_000, range: 1.. },
    /// Frames queued per socket before it counts as a slow consumer (4100).
    socket_queue_capacity: usize = "FLARUM_WS_SOCKET_QUEUE_CAPACITY" { default: 512, range: 1.. },
    /// Token for /dashboard and /metrics (unset: a random one, printed at startup).
    admin_token: Secret = "FLARUM_WS_ADMIN_TOKEN",
    /// ADDRESS:PORT of a separate listener serving /metrics without a token.
    metrics_listen: String = "FLARUM_WS_METRICS_LISTEN" => restart,
    /// Log lines as `text` (for people) or `json` (for log shippers).
    log_format: String = "FLARUM_WS_LOG_FORMAT" { default: "text".to_owned() } => restart,
    /// Redis for running several nodes as one server (unset: one node).
    redis_url: Secret = "FLARUM_WS_REDIS_URL" => restart,
    /// Prefix of the Redis channel, so several forums can share one Redis.
    redis_prefix: String = "FLARUM_WS_REDIS_PREFIX" { default: "flarum-ws".to_owned() } => restart,
    /// Flarum 2 forums that cache in Redis (fof/redis): that Redis, e.g.
    /// `redis://127.0.0.1:6379/1`, where flarum/realtime's restart requests
    /// are then kept (unset: the forum's file cache).
    forum_cache_redis_url: Secret = "FLARUM_WS_FORUM_CACHE_REDIS_URL",
    /// The cache key prefix of fof/redis's configuration (`prefix`).
    forum_cache_prefix: String = "FLARUM_WS_FORUM_CACHE_PREFIX" { default: String::new() },
    /// URL that receives every webhook event, signed with the app secret
    /// as Pusher signs them (more receivers, with filters: `webhooks`).
    webhook_url: String = "FLARUM_WS_WEBHOOK_URL" => restart,
    /// Webhook receivers: a list of `url`, optional `events` (names as
    /// Pusher's, default every event) and optional `channel_prefix`; in a
    /// variable, the same list as JSON.
    webhooks: WebhookList = "FLARUM_WS_WEBHOOKS" => restart,
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
    check_ranges(&p, &provenance)?;
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
        None if reverse_proxy => {
            let local = vec!["127.0.0.1".to_owned(), "::1".to_owned()];
            provenance.insert("trusted_proxies", Source::Default);
            p.trusted_proxies = Some(local.clone());
            local
        }
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
        .map(|o| o.trim().trim_end_matches('/').to_ascii_lowercase())
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
        max_cached_channels: p.max_cached_channels.unwrap_or_default(),
        socket_queue_capacity: p.socket_queue_capacity.unwrap_or_default(),
    };
    let pv = &provenance;
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
    let webhooks = webhook_targets(&p, pv)?;
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
            require_origin: p.require_origin.unwrap_or_default(),
            trusted_proxies: trusted,
            verbose,
            limits,
            admin_token: p.admin_token.clone().filter(|t| !t.expose().is_empty()),
            metrics_listen,
            log_format,
            redis_url: p.redis_url.clone().filter(|u| !u.expose().is_empty()),
            redis_prefix: p.redis_prefix.clone().unwrap_or_default(),
            forum_cache_redis_url: p
                .forum_cache_redis_url
                .clone()
                .filter(|u| !u.expose().is_empty()),
            forum_cache_prefix: p.forum_cache_prefix.clone().unwrap_or_default(),
            webhooks,
        },
        provenance,
        effective: p,
        overrides: Vec::new(),
    })
}

/// `webhook_url` (every event) and the `webhooks` list, each URL checked.
fn webhook_targets(
    p: &PartialSettings,
    provenance: &Provenance,
) -> Result<Vec<WebhookTarget>, ConfigError> {
    let single = p
        .webhook_url
        .iter()
        .filter(|url| !url.trim().is_empty())
        .map(|url| {
            (
                "webhook_url",
                WebhookTarget::everything(url.trim().to_owned()),
            )
        });
    let listed = p
        .webhooks
        .iter()
        .flat_map(|list| list.0.iter().cloned())
        .map(|target| ("webhooks", target));
    let mut targets = Vec::new();
    for (name, target) in single.chain(listed) {
        if let Some(problem) = target.url_problem() {
            return Err(ConfigError::InvalidSetting {
                name,
                origin: provenance.get(name).cloned().unwrap_or(Source::Default),
                problem,
            });
        }
        targets.push(target);
    }
    Ok(targets)
}
