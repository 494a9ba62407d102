//! The one list of settings: YAML key, environment variable, type, help,
//! default, allowed range, where the value goes in [`Settings`] and whether a
//! change needs a restart. From it are generated the partial struct, the
//! variable parser, the merge, the defaults, the range checks, the copies
//! into [`Settings`] and the documented list ([`ROWS`]). `into_settings`
//! keeps only the rules that involve several settings or parse a value
//! further (the credentials, the bind address, TLS, proxies, origins,
//! metrics listener, log format and webhooks).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::ops::{Bound, RangeBounds};
use std::time::Duration;

use super::value::{FromVariable, Secret};
use super::webhook::{WebhookList, WebhookTarget};
use super::{
    AppCredentials, ClientAddressHeader, ConfigError, Limits, LogFormat, Provenance, Resolved,
    Settings, Source, TlsFiles,
};

macro_rules! settings {
    ($(
        $(#[doc = $doc:literal])*
        $field:ident : $ty:ty = $var:literal
        $({ default: $default:expr $(, range: $range:expr)? $(,)? })?
        $(-> settings . $copied:ident)?
        $(-> limits . $limit:ident)?
        $(=> $restart:ident)?
    ),* $(,)?;
    $(#[doc = $derived_doc:literal])*
    derived {
        $( $(#[doc = $one_derived_doc:literal])* $derived:ident : $derived_ty:ty ),* $(,)?
    }) => {
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

        $(#[doc = $derived_doc])*
        struct Derived {
            $( $(#[doc = $one_derived_doc])* $derived: $derived_ty, )*
        }

        /// The finished settings: the derived ones, and each row that says
        /// where it goes (`-> settings.port`, `-> limits.cache_ttl`) copied
        /// there as [`Land`] converts it. The compiler checks that every
        /// field of [`Settings`] and [`Limits`] is given exactly once.
        fn assemble(p: &PartialSettings, derived: Derived) -> Settings {
            let Derived { $($derived),* } = derived;
            Settings {
                $($derived,)*
                $( $( $copied: Land::land(p.$field.clone()), )? )*
                limits: Limits { $( $( $limit: Land::land(p.$field.clone()), )? )* },
            }
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

/// How a row's merged value becomes its field of [`Settings`], by the
/// field's type: as it is (every such row has a default, or its type's
/// default means unset), seconds as a [`Duration`], and for an optional
/// field, empty text as unset.
trait Land<T> {
    fn land(self) -> T;
}

impl<T: Default> Land<T> for Option<T> {
    fn land(self) -> T {
        self.unwrap_or_default()
    }
}

impl Land<Duration> for Option<u64> {
    fn land(self) -> Duration {
        Duration::from_secs(self.unwrap_or_default())
    }
}

impl Land<Option<String>> for Option<String> {
    fn land(self) -> Option<String> {
        self.filter(|text| !text.is_empty())
    }
}

impl Land<Option<Secret>> for Option<Secret> {
    fn land(self) -> Option<Secret> {
        self.filter(|secret| !secret.expose().is_empty())
    }
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
    Err(invalid(
        name,
        provenance,
        format!("is {value}; it must be {allowed}"),
    ))
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
    port: u16 = "FLARUM_WS_PORT" { default: 2083 } -> settings.port => restart,
    /// Whether clients may send `client-*` events.
    client_events: bool = "FLARUM_WS_CLIENT_EVENTS" { default: false } -> settings.client_events,
    /// Seconds of silence before the server pings a client; pusher-js is
    /// told the same and pings the server after that much silence. 30, as
    /// both PHP daemons: an idle connection then carries traffic well inside
    /// the 60 s read timeout of the proxies admins already run.
    activity_timeout: u64 = "FLARUM_WS_ACTIVITY_TIMEOUT" { default: 30, range: 1..=3600 } -> settings.activity_timeout,
    /// Seconds a client has to answer the server's ping before 4201; also how
    /// long a write may make no progress before a client that stopped
    /// reading is dropped (4100).
    pong_timeout: u64 = "FLARUM_WS_PONG_TIMEOUT" { default: 30, range: 1..=3600 } -> settings.pong_timeout,
    /// Seconds over which a server handing its socket to a new `serve`
    /// closes its websockets (4200, in 64 groups one after another), so
    /// that their reconnections, and the channel authorizations each asks
    /// of the forum, arrive spread instead of at once; 0: all at once. A
    /// stop with no successor (SIGTERM, a restart under systemd) closes at
    /// once whatever this says: nobody accepts the reconnections meanwhile.
    close_spread: u64 = "FLARUM_WS_CLOSE_SPREAD" { default: 5, range: 0..=60 } -> settings.close_spread,
    /// Log every connection, subscription and message.
    verbose: bool = "FLARUM_WS_VERBOSE" { default: false } -> settings.verbose => restart,
    /// A TLS proxy (nginx) sits in front: serve plain HTTP, bind 127.0.0.1.
    reverse_proxy: bool = "FLARUM_WS_REVERSE_PROXY" { default: false } -> settings.reverse_proxy => restart,
    /// Full-chain certificate (PEM) for serving TLS.
    tls_cert: String = "FLARUM_WS_TLS_CERT" => restart,
    /// Private key (PEM) of the certificate.
    tls_key: String = "FLARUM_WS_TLS_KEY" => restart,
    /// Passphrase of an encrypted private key.
    tls_passphrase: Secret = "FLARUM_WS_TLS_PASSPHRASE" => restart,
    /// The certificate is self-signed (the server's own probes accept it).
    self_signed: bool = "FLARUM_WS_SELF_SIGNED" { default: false } -> settings.self_signed,
    /// Host name browsers and the forum use to reach the server.
    app_host: String = "FLARUM_WS_APP_HOST" -> settings.app_host,
    /// Seconds between rows of the forum's statistics widget.
    statistics_interval: u64 = "FLARUM_WS_STATISTICS_INTERVAL" { default: 7200, range: 1..=2_592_000 } -> settings.statistics_interval => restart,
    /// Whether to write statistics rows to the forum database.
    statistics: bool = "FLARUM_WS_STATISTICS" { default: true } -> settings.statistics => restart,
    /// Open websocket connections the server accepts in all.
    max_connections: usize = "FLARUM_WS_MAX_CONNECTIONS" { default: 50_000, range: 1.. } -> limits.max_connections,
    /// Once 90 % of `max_connections` are open, the most one client address
    /// may hold, shrinking to 1 as the last places go (the busiest addresses
    /// are refused first); below that, any number. The same for open HTTP
    /// connections per peer address that is not a trusted proxy.
    max_connections_per_ip: usize = "FLARUM_WS_MAX_CONNECTIONS_PER_IP" { default: 1_000, range: 1.. } -> limits.max_connections_per_ip,
    /// Channels one connection may be subscribed to at once.
    max_subscriptions_per_connection: usize = "FLARUM_WS_MAX_SUBSCRIPTIONS_PER_CONNECTION" { default: 1_000, range: 1.. } -> limits.max_subscriptions_per_connection,
    /// Seconds a client has to send its request head, and then to complete
    /// its request, body included (408 after it).
    handshake_timeout: u64 = "FLARUM_WS_HANDSHAKE_TIMEOUT" { default: 10, range: 1..=3600 } -> limits.handshake_timeout,
    /// Browser origins allowed to connect, e.g. `https://forum.example`
    /// (`*`: any). Run from a forum, the default is the forum's url; alone,
    /// any origin.
    allowed_origins: Vec<String> = "FLARUM_WS_ALLOWED_ORIGINS",
    /// Refuse websockets that send no Origin header (browsers always send
    /// one). On for Flarum 2 forums, as flarum/realtime does.
    require_origin: bool = "FLARUM_WS_REQUIRE_ORIGIN" { default: false } -> settings.require_origin,
    /// Proxies whose `client_address_header` is believed.
    trusted_proxies: Vec<String> = "FLARUM_WS_TRUSTED_PROXIES",
    /// The header a trusted proxy overwrites with the client's address:
    /// `x-real-ip` (nginx `proxy_set_header X-Real-IP $remote_addr`, as
    /// `nginx-snippet` prints), `x-forwarded-for` or `forwarded` (the
    /// right-most address that is not a trusted proxy: nginx
    /// `$proxy_add_x_forwarded_for`, HAProxy `option forwardfor`). No other
    /// header is read, so a client cannot name itself through one the
    /// proxy passes on unchanged.
    client_address_header: String = "FLARUM_WS_CLIENT_ADDRESS_HEADER" { default: "x-real-ip".to_owned() },
    /// Members one presence channel may hold.
    max_presence_members: usize = "FLARUM_WS_MAX_PRESENCE_MEMBERS" { default: 10_000, range: 1.. } -> limits.max_presence_members,
    /// Bytes of `user_info` one presence member may carry.
    max_presence_user_info_bytes: usize = "FLARUM_WS_MAX_PRESENCE_USER_INFO_BYTES" { default: 1024 } -> limits.max_presence_user_info_bytes,
    /// Characters of a presence `user_id`.
    max_presence_user_id_length: usize = "FLARUM_WS_MAX_PRESENCE_USER_ID_LENGTH" { default: 128 } -> limits.max_presence_user_id_length,
    /// Characters of a channel name.
    max_channel_name_length: usize = "FLARUM_WS_MAX_CHANNEL_NAME_LENGTH" { default: 200, range: 1.. } -> limits.max_channel_name_length,
    /// Characters of an event name.
    max_event_name_length: usize = "FLARUM_WS_MAX_EVENT_NAME_LENGTH" { default: 200, range: 1.. } -> limits.max_event_name_length,
    /// Bytes of one event's data.
    max_event_data_bytes: usize = "FLARUM_WS_MAX_EVENT_DATA_BYTES" { default: 10 * 1024, range: 1.. } -> limits.max_event_data_bytes,
    /// Channels one API event may name.
    max_channels_per_event: usize = "FLARUM_WS_MAX_CHANNELS_PER_EVENT" { default: 100, range: 1.. } -> limits.max_channels_per_event,
    /// Events in one `batch_events` request.
    max_batch_events: usize = "FLARUM_WS_MAX_BATCH_EVENTS" { default: 10, range: 1.. } -> limits.max_batch_events,
    /// Client events one connection may send per second (4301 above it).
    client_events_per_second: u32 = "FLARUM_WS_CLIENT_EVENTS_PER_SECOND" { default: 10 } -> limits.client_events_per_second,
    /// Signed HTTP API requests per second for the app's key (429 above it).
    api_requests_per_second: u32 = "FLARUM_WS_API_REQUESTS_PER_SECOND" { default: 1000, range: 1.. } -> limits.api_requests_per_second,
    /// Bytes of one websocket message from a client (1009 above it).
    max_message_bytes: usize = "FLARUM_WS_MAX_MESSAGE_BYTES" { default: 64 * 1024, range: 1.. } -> limits.max_message_bytes,
    /// Bytes of one HTTP API request body (413 above it).
    max_request_body_bytes: usize = "FLARUM_WS_MAX_REQUEST_BODY_BYTES" { default: 256 * 1024, range: 1.. } -> limits.max_request_body_bytes,
    /// Users in one signin's watchlist (4302 above it).
    max_watchlist_size: usize = "FLARUM_WS_MAX_WATCHLIST_SIZE" { default: 100 } -> limits.max_watchlist_size,
    /// Seconds a cache channel remembers its last event.
    cache_ttl: u64 = "FLARUM_WS_CACHE_TTL" { default: 1800, range: 1..=604_800 } -> limits.cache_ttl,
    /// Cache channels holding an event at once; the oldest is forgotten first.
    max_cached_channels: usize = "FLARUM_WS_MAX_CACHED_CHANNELS" { default: 10_000, range: 1.. } -> limits.max_cached_channels,
    /// Frames queued per socket before it counts as a slow consumer (4100).
    socket_queue_capacity: usize = "FLARUM_WS_SOCKET_QUEUE_CAPACITY" { default: 512, range: 1.. } -> limits.socket_queue_capacity,
    /// Token for /dashboard and /metrics (unset: a random one, printed at startup).
    admin_token: Secret = "FLARUM_WS_ADMIN_TOKEN" -> settings.admin_token,
    /// ADDRESS:PORT of a separate listener serving /metrics without a token.
    metrics_listen: String = "FLARUM_WS_METRICS_LISTEN" => restart,
    /// Log lines as `text` (for people) or `json` (for log shippers).
    log_format: String = "FLARUM_WS_LOG_FORMAT" { default: "text".to_owned() } => restart,
    /// Redis for running several nodes as one server (unset: one node): `redis://`, `rediss://` (TLS), `redis+sentinel://` or `rediss+sentinel://` (Sentinel), `redis+cluster://` or `rediss+cluster://` (Redis Cluster); see docs/operations.md.
    redis_url: Secret = "FLARUM_WS_REDIS_URL" -> settings.redis_url => restart,
    /// Prefix of the Redis channel, so several forums can share one Redis.
    redis_prefix: String = "FLARUM_WS_REDIS_PREFIX" { default: "flarum-ws".to_owned() } -> settings.redis_prefix => restart,
    /// CA certificate (PEM) that signed a `rediss://` Redis's certificate,
    /// trusted instead of the system's roots (a private CA).
    redis_ca_file: String = "FLARUM_WS_REDIS_CA_FILE" -> settings.redis_ca_file => restart,
    /// Client certificate (PEM) for a `rediss://` Redis that asks for one.
    redis_client_cert: String = "FLARUM_WS_REDIS_CLIENT_CERT" -> settings.redis_client_cert => restart,
    /// Private key (PEM) of `redis_client_cert`.
    redis_client_key: String = "FLARUM_WS_REDIS_CLIENT_KEY" -> settings.redis_client_key => restart,
    /// Flarum 2 forums that cache in Redis (fof/redis): that Redis, e.g.
    /// `redis://127.0.0.1:6379/1`, where flarum/realtime's restart requests
    /// are then kept (unset: the forum's file cache).
    forum_cache_redis_url: Secret = "FLARUM_WS_FORUM_CACHE_REDIS_URL" -> settings.forum_cache_redis_url,
    /// The cache key prefix of fof/redis's configuration (`prefix`).
    forum_cache_prefix: String = "FLARUM_WS_FORUM_CACHE_PREFIX" { default: String::new() } -> settings.forum_cache_prefix,
    /// URL that receives every webhook event, signed with the app secret
    /// as Pusher signs them (more receivers, with filters: `webhooks`).
    webhook_url: String = "FLARUM_WS_WEBHOOK_URL" => restart,
    /// Webhook receivers: a list of `url`, optional `events` (names as
    /// Pusher's, default every event) and optional `channel_prefix`; in a
    /// variable, the same list as JSON.
    webhooks: WebhookList = "FLARUM_WS_WEBHOOKS" => restart,
    ;
    /// Settings decided from several rows, or with a rule of their own, by
    /// [`into_settings`].
    derived {
        app: AppCredentials,
        host: String,
        tls: Option<TlsFiles>,
        allowed_origins: Vec<String>,
        trusted_proxies: Vec<IpAddr>,
        client_address_header: ClientAddressHeader,
        metrics_listen: Option<SocketAddr>,
        log_format: LogFormat,
        webhooks: Vec<WebhookTarget>,
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

/// The merged sources with defaults applied, checked, as [`Settings`].
pub(super) fn into_settings(
    mut p: PartialSettings,
    mut provenance: Provenance,
    from_forum: bool,
) -> Result<Resolved, ConfigError> {
    let given = p.clone();
    let given_provenance = provenance.clone();
    p.layer_under(defaults(), &Source::Default, &mut provenance);
    layer_proxy_defaults(&mut p, &mut provenance);
    check_ranges(&p, &provenance)?;
    let derived = Derived {
        app: credentials(&p, from_forum)?,
        tls: tls_files(&p),
        trusted_proxies: trusted_proxies(&p, &provenance)?,
        client_address_header: client_address_header(&p, &provenance)?,
        allowed_origins: allowed_origins(&p),
        host: bind_host(&p, &provenance)?,
        log_format: log_format(&p, &provenance)?,
        metrics_listen: metrics_listen(&p, &provenance)?,
        webhooks: webhook_targets(&p, &provenance)?,
    };
    Ok(Resolved {
        settings: assemble(&p, derived),
        provenance,
        effective: p,
        given,
        given_provenance,
        from_forum,
        overrides: Vec::new(),
    })
}

/// The defaults that depend on `reverse_proxy`: behind a local proxy the
/// port must not be reachable from outside, and the proxy is trusted to say
/// who the client is.
fn layer_proxy_defaults(p: &mut PartialSettings, provenance: &mut Provenance) {
    let reverse_proxy = p.reverse_proxy.unwrap_or_default();
    if p.host.is_none() {
        let host = if reverse_proxy {
            "127.0.0.1"
        } else {
            "0.0.0.0"
        };
        p.host = Some(host.to_owned());
        provenance.insert("host", Source::Default);
    }
    if p.trusted_proxies.is_none() && reverse_proxy {
        p.trusted_proxies = Some(vec!["127.0.0.1".to_owned(), "::1".to_owned()]);
        provenance.insert("trusted_proxies", Source::Default);
    }
}

/// `name`'s value is refused for `problem`, naming where it came from.
fn invalid(name: &'static str, provenance: &Provenance, problem: String) -> ConfigError {
    ConfigError::InvalidSetting {
        name,
        origin: provenance.get(name).cloned().unwrap_or(Source::Default),
        problem,
    }
}

/// The app id, key and secret, all three required.
fn credentials(p: &PartialSettings, from_forum: bool) -> Result<AppCredentials, ConfigError> {
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
    Ok(AppCredentials {
        id: p.app_id.clone().unwrap_or_default(),
        key: p.app_key.clone().unwrap_or_default(),
        secret: p.app_secret.clone().unwrap_or_else(|| Secret::new("")),
    })
}

/// TLS is wanted exactly when a certificate is set and no proxy terminates it.
fn tls_files(p: &PartialSettings) -> Option<TlsFiles> {
    match (p.tls_cert.clone(), p.reverse_proxy.unwrap_or_default()) {
        (Some(cert), false) if !cert.is_empty() => Some(TlsFiles {
            cert: cert.into(),
            key: p.tls_key.clone().unwrap_or_default().into(),
            passphrase: p.tls_passphrase.clone().filter(|s| !s.expose().is_empty()),
        }),
        _ => None,
    }
}

fn trusted_proxies(
    p: &PartialSettings,
    provenance: &Provenance,
) -> Result<Vec<IpAddr>, ConfigError> {
    let entries = p.trusted_proxies.as_deref().unwrap_or_default();
    entries
        .iter()
        .map(|entry| {
            entry.parse::<IpAddr>().map_err(|_| {
                invalid(
                    "trusted_proxies",
                    provenance,
                    format!("{entry:?} is not an IP address"),
                )
            })
        })
        .collect()
}

fn client_address_header(
    p: &PartialSettings,
    provenance: &Provenance,
) -> Result<ClientAddressHeader, ConfigError> {
    let name = p.client_address_header.as_deref().unwrap_or_default();
    ClientAddressHeader::from_name(name).ok_or_else(|| {
        invalid(
            "client_address_header",
            provenance,
            format!("{name:?} is not a header flarum-ws reads (use x-real-ip, x-forwarded-for or forwarded)"),
        )
    })
}

/// Origins as they are compared: lower case, no trailing slash.
fn allowed_origins(p: &PartialSettings) -> Vec<String> {
    let origins = p.allowed_origins.as_deref().unwrap_or_default();
    origins
        .iter()
        .map(|o| o.trim().trim_end_matches('/').to_ascii_lowercase())
        .collect()
}

fn bind_host(p: &PartialSettings, provenance: &Provenance) -> Result<String, ConfigError> {
    let host = p.host.clone().unwrap_or_default();
    if host.parse::<IpAddr>().is_err() {
        return Err(invalid(
            "host",
            provenance,
            format!(
                "{host:?} is not an IP address (use 0.0.0.0 for all IPv4 interfaces, :: for all IPv6, 127.0.0.1 for this machine only)"
            ),
        ));
    }
    Ok(host)
}

fn log_format(p: &PartialSettings, provenance: &Provenance) -> Result<LogFormat, ConfigError> {
    match p.log_format.as_deref().unwrap_or_default() {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        other => Err(invalid(
            "log_format",
            provenance,
            format!("{other:?} is not a log format (use text or json)"),
        )),
    }
}

fn metrics_listen(
    p: &PartialSettings,
    provenance: &Provenance,
) -> Result<Option<SocketAddr>, ConfigError> {
    match p.metrics_listen.as_deref() {
        None | Some("") => Ok(None),
        Some(text) => text.parse::<SocketAddr>().map(Some).map_err(|_| {
            invalid(
                "metrics_listen",
                provenance,
                format!("{text:?} is not ADDRESS:PORT (for example 127.0.0.1:9601)"),
            )
        }),
    }
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
            return Err(invalid(name, provenance, problem));
        }
        targets.push(target);
    }
    Ok(targets)
}
