//! Settings: gathered from every source, merged by precedence, validated.
//!
//! Precedence, highest first: command-line flags > environment > `.env` in
//! the working directory > YAML file > forum settings > defaults. Every
//! source produces the same all-`Option` [`PartialSettings`]; [`resolve`]
//! layers them and remembers which source each value came from so that a
//! command can show the admin where a setting was decided.

mod fields;
mod file;
mod reload;
mod sources;
mod value;
mod webhook;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

pub use fields::{PartialSettings, ROWS, SettingRow, VARIABLES, defaults};
pub use reload::{Held, hold_restart_settings};
pub use sources::{
    ForumLayer, Sources, is_known_variable, known_variables, load_sources, nearest,
    nearest_known_variable,
};
pub use value::Secret;
pub use webhook::{WebhookKind, WebhookList, WebhookTarget};

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Flag,
    Environment,
    DotEnv(PathBuf),
    Yaml(PathBuf),
    /// The forum: where in it (a settings-table key, a config.php entry).
    Forum(String),
    Default,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Flag => f.write_str("command-line flag"),
            Self::Environment => f.write_str("environment"),
            Self::DotEnv(path) => write!(f, "{}", path.display()),
            Self::Yaml(path) => write!(f, "{}", path.display()),
            Self::Forum(place) => f.write_str(place),
            Self::Default => f.write_str("default"),
        }
    }
}

impl Source {
    /// Where exactly `setting` is given in this source, for advice:
    /// `FLARUM_WS_PORT in the environment`, `port: in /etc/flarum-ws.yaml`.
    pub fn place_of(&self, setting: &str) -> String {
        let variable = ROWS
            .iter()
            .find(|row| row.key == setting)
            .map_or("", |row| row.variable);
        match self {
            Self::Flag => format!("the --{} flag", setting.replace('_', "-")),
            Self::Environment => format!("{variable} in the environment"),
            Self::DotEnv(path) => format!("{variable} in {}", path.display()),
            Self::Yaml(path) => format!("`{setting}:` in {}", path.display()),
            Self::Forum(place) => place.clone(),
            Self::Default => "the default".into(),
        }
    }
}

/// Which source decided each setting, by setting name.
pub type Provenance = BTreeMap<&'static str, Source>;

/// A problem with the configuration, worded for the admin who has to fix it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {message}")]
    InvalidYaml { path: PathBuf, message: String },
    #[error("invalid {origin} variable {name}={value:?}: {problem}")]
    InvalidVariable {
        origin: String,
        name: String,
        value: String,
        problem: String,
    },
    #[error("unknown {origin} variable {name}; {hint}")]
    UnknownVariable {
        origin: String,
        name: String,
        /// The nearest known name, or the list of them.
        hint: String,
    },
    #[error("cannot read {path}: {message}")]
    DotEnv { path: PathBuf, message: String },
    #[error("no app credentials: {missing} not set. {hint}")]
    MissingCredentials { missing: String, hint: &'static str },
    #[error("invalid setting {name} (from {origin}): {problem}")]
    InvalidSetting {
        name: &'static str,
        origin: Source,
        problem: String,
    },
}

/// The application the server serves (one per server, as in Flarum).
#[derive(Debug, Clone, PartialEq)]
pub struct AppCredentials {
    pub id: String,
    pub key: String,
    pub secret: Secret,
}

/// Protocol limits; every one configurable, with Pusher's values as defaults
/// except where a forum needs more (presence members).
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub max_subscriptions_per_connection: usize,
    pub handshake_timeout: Duration,
    pub max_presence_members: usize,
    pub max_presence_user_info_bytes: usize,
    pub max_presence_user_id_length: usize,
    pub max_channel_name_length: usize,
    pub max_event_name_length: usize,
    pub max_event_data_bytes: usize,
    pub max_channels_per_event: usize,
    pub max_batch_events: usize,
    pub client_events_per_second: u32,
    pub api_requests_per_second: u32,
    pub max_message_bytes: usize,
    pub max_request_body_bytes: usize,
    pub max_watchlist_size: usize,
    pub cache_ttl: Duration,
    pub max_cached_channels: usize,
    pub socket_queue_capacity: usize,
}

/// The certificate files TLS is served with.
#[derive(Debug, Clone, PartialEq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub passphrase: Option<Secret>,
}

/// Everything `serve` needs, fully resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub app: AppCredentials,
    pub host: String,
    pub port: u16,
    pub client_events: bool,
    pub activity_timeout: Duration,
    pub pong_timeout: Duration,
    /// Over how long a server stepping aside for a new one closes its
    /// websockets (`server::closing`).
    pub close_spread: Duration,
    /// A TLS proxy in front terminates TLS; the server speaks plain HTTP.
    pub reverse_proxy: bool,
    /// Certificate and key when the server itself should serve TLS.
    pub tls: Option<TlsFiles>,
    pub self_signed: bool,
    /// Host name browsers use (the extension's app_host), when set.
    pub app_host: Option<String>,
    /// Whether to write the forum's statistics rows.
    pub statistics: bool,
    pub statistics_interval: Duration,
    /// Origins (`https://forum.example`, lower case, no trailing slash) or
    /// bare host names (any scheme and port) browsers may connect from;
    /// empty or `*`: any.
    pub allowed_origins: Vec<String>,
    /// Refuse websockets without an Origin header.
    pub require_origin: bool,
    /// Peers whose `client_address_header` names the real client.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// The one header a trusted proxy's word on the client is read from.
    pub client_address_header: ClientAddressHeader,
    pub verbose: bool,
    pub limits: Limits,
    /// Token for /dashboard and /metrics; `None`: the server makes one up.
    pub admin_token: Option<Secret>,
    /// A separate listener for /metrics without a token (keep it private).
    pub metrics_listen: Option<std::net::SocketAddr>,
    pub log_format: LogFormat,
    /// Redis for a cluster of nodes (may hold a password, hence secret).
    pub redis_url: Option<Secret>,
    pub redis_prefix: String,
    /// TLS to Redis (`rediss://`): a private CA, and a client certificate.
    pub redis_ca_file: Option<String>,
    pub redis_client_cert: Option<String>,
    pub redis_client_key: Option<String>,
    /// The Redis a Flarum 2 forum caches in, for its restart requests.
    pub forum_cache_redis_url: Option<Secret>,
    /// fof/redis's cache key prefix.
    pub forum_cache_prefix: String,
    /// Where webhook events are POSTed (`webhook_url` first, then `webhooks`).
    pub webhooks: Vec<WebhookTarget>,
}

/// The header a trusted proxy names the client in. Only the one the proxy
/// overwrites can be believed: a header it passes on unchanged says
/// whatever the client wrote in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAddressHeader {
    /// `X-Real-IP`: one address, set by the proxy.
    XRealIp,
    /// `X-Forwarded-For`: the right-most address that is not a trusted
    /// proxy (what the proxy appended).
    XForwardedFor,
    /// `Forwarded` (RFC 7239): the right-most `for=` that is not a
    /// trusted proxy.
    Forwarded,
}

impl ClientAddressHeader {
    /// The setting's value for each header, case-insensitive.
    pub fn from_name(name: &str) -> Option<Self> {
        match name.trim().to_ascii_lowercase().as_str() {
            "x-real-ip" => Some(Self::XRealIp),
            "x-forwarded-for" => Some(Self::XForwardedFor),
            "forwarded" => Some(Self::Forwarded),
            _ => None,
        }
    }

    /// The header's name as sent on the wire (lower case).
    pub fn header_name(self) -> &'static str {
        match self {
            Self::XRealIp => "x-real-ip",
            Self::XForwardedFor => "x-forwarded-for",
            Self::Forwarded => "forwarded",
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One readable line per event.
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Settings and the source of each value.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub settings: Settings,
    pub provenance: Provenance,
    /// Every setting's value after merging and defaults, for display.
    pub effective: PartialSettings,
    /// What the sources gave, before defaults, and where each came from:
    /// what a reload holds back for a setting that needs a restart, so
    /// the defaults that follow from it follow from the served value.
    given: PartialSettings,
    given_provenance: Provenance,
    /// Whether a forum was among the sources (for the credentials' advice).
    from_forum: bool,
    /// Values the forum sets that another source replaced.
    pub overrides: Vec<Override>,
}

/// One setting as a process runs with it: for `/about`, so `check` and an
/// admin can see what a running server actually loaded.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct InForce {
    pub key: &'static str,
    /// The value as text, secrets redacted; `None` when unset.
    pub value: Option<String>,
    /// Where it came from (`FLARUM_WS_PORT in the environment`, `the default`).
    pub source: String,
}

impl Resolved {
    /// Every setting, its value and where it came from.
    pub fn in_force(&self) -> Vec<InForce> {
        self.effective
            .describe()
            .into_iter()
            .map(|(key, value)| InForce {
                key,
                value,
                source: self
                    .provenance
                    .get(key)
                    .map_or_else(|| "unset".to_owned(), |source| source.place_of(key)),
            })
            .collect()
    }
}

/// A setting the forum sets, replaced by a flag, variable or YAML file:
/// the forum's settings page then no longer decides it, which surprises
/// an admin who changes it there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Override {
    pub setting: &'static str,
    pub by: Source,
    /// Where the forum keeps the value that is not used.
    pub forum_place: String,
}

/// Merges the sources by precedence, applies defaults and validates.
pub fn resolve(sources: Sources) -> Result<Resolved, ConfigError> {
    let mut provenance = Provenance::new();
    let mut merged = PartialSettings::default();
    merged.layer_under(sources.flags, &Source::Flag, &mut provenance);
    merged.layer_under(sources.environment, &Source::Environment, &mut provenance);
    if let Some((path, dotenv)) = sources.dotenv {
        merged.layer_under(dotenv, &Source::DotEnv(path), &mut provenance);
    }
    if let Some((path, yaml)) = sources.yaml {
        merged.layer_under(yaml, &Source::Yaml(path), &mut provenance);
    }
    let forum = sources.forum.is_some();
    let mut overrides = Vec::new();
    if let Some(layer) = sources.forum {
        let place = |setting: &str| {
            layer
                .origins
                .get(setting)
                .cloned()
                .unwrap_or_else(|| "the forum".to_owned())
        };
        for (setting, value) in layer.settings.describe() {
            if let (Some(_), Some(by)) = (value, provenance.get(setting)) {
                overrides.push(Override {
                    setting,
                    by: by.clone(),
                    forum_place: place(setting),
                });
            }
        }
        let before: Vec<&'static str> = provenance.keys().copied().collect();
        merged.layer_under(
            layer.settings,
            &Source::Forum(String::new()),
            &mut provenance,
        );
        for (setting, source) in provenance.iter_mut() {
            if !before.contains(setting) {
                *source = Source::Forum(place(setting));
            }
        }
    }
    let mut resolved = fields::into_settings(merged, provenance, forum)?;
    resolved.overrides = overrides;
    Ok(resolved)
}

/// The `proxy_read_timeout` a proxy in front needs so it never cuts an idle,
/// healthy connection: the keepalive, the time a ping may wait for its
/// answer, and a minute to spare. `nginx-snippet` prints it and `check`
/// suggests it.
pub fn proxy_read_timeout_secs(
    activity_timeout: std::time::Duration,
    pong_timeout: std::time::Duration,
) -> u64 {
    activity_timeout.as_secs() + pong_timeout.as_secs() + 60
}
