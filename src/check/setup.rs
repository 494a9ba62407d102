//! Running the checks in order; later checks run only when the earlier ones
//! they depend on passed.

use std::path::PathBuf;

use super::certificate::check_certificate;
use super::live::{Browsers, LiveOptions, check_live};
use super::nginx_timeout::{check_nginx_client_address, check_nginx_timeouts, default_files};
use super::port::check_port;
use super::restarts::{check_restarts, socket_unit};
use super::sandbox::{check_hidden_root, check_sqlite_writable};
use super::service_user::{ServiceUser, service_user};
use super::unit::{ServiceUnit, UNIT_DIRECTORIES, unit_files};
use super::unit_env::{UnitEnvironment, judge};
use super::webhooks::check_webhooks;
use super::{Finding, Status};
use crate::access::{Blocked, can_read};
use crate::cluster;
use crate::config::{PartialSettings, Resolved, Settings};
use crate::forum::{
    Database, Driver, Extension, ForumConfig, ForumSettings, read_forum_settings, realtime_client,
};
use crate::loading::{Gathered, LoadInput, gather};
use crate::server::admission::{HIGH_WATER_PERCENT, high_water_mark};

/// Ports Cloudflare's proxy forwards for HTTPS on every plan.
const CLOUDFLARE_HTTPS_PORTS: [u16; 5] = [2053, 2083, 2087, 2096, 8443];

/// What to check and where the settings come from.
pub struct CheckInput {
    pub flags: PartialSettings,
    pub config: Option<PathBuf>,
    pub root: Option<PathBuf>,
    pub cwd: PathBuf,
    pub environment: Vec<(String, String)>,
    pub live: Option<LiveOptions>,
    /// `--user`: whose access to the certificate files to judge.
    pub user: Option<String>,
    /// `--nginx-conf`: the nginx files to read (empty: the usual places).
    pub nginx_conf: Vec<PathBuf>,
    /// `--unit`: the service's unit file (default: the installed
    /// flarum-ws.service and its drop-ins, if any).
    pub unit: Option<PathBuf>,
}

/// Runs every check that can run and returns all findings.
pub async fn run_checks(input: CheckInput) -> Vec<Finding> {
    let mut findings = Vec::new();
    // A stage that cannot go on has said why in `findings`.
    let _ = run_stages(input, &mut findings).await;
    findings
}

/// A stage found a failure the later checks depend on.
struct Stop;

/// Records `finding` and stops the run.
fn stop(findings: &mut Vec<Finding>, finding: Finding) -> Stop {
    findings.push(finding);
    Stop
}

/// The stages in order: the service's unit and environment, the sources,
/// the forum's files, its database and settings, the merged settings, the
/// setup, and the live round trip.
async fn run_stages(input: CheckInput, findings: &mut Vec<Finding>) -> Result<(), Stop> {
    let unit = ServiceUnit::read(&match &input.unit {
        Some(unit) => vec![unit.clone()],
        None => unit_files(&UNIT_DIRECTORIES, "flarum-ws.service"),
    });
    // Judged as the service will run: its unit's environment and working
    // directory, when a unit is installed (or named).
    let (environment, cwd) = match &unit {
        Some(unit) => {
            let judged = judge(
                &UnitEnvironment::read(unit),
                input.environment,
                &input.cwd,
                input.root.is_some(),
            );
            findings.extend(judged.findings);
            (judged.environment, judged.cwd)
        }
        None => (input.environment, input.cwd),
    };
    let user = service_user(input.user.as_deref(), unit.as_ref());
    let gathered = gather(LoadInput {
        flags: input.flags,
        config: input.config,
        root: input.root,
        cwd,
        environment,
    })
    .map_err(|error| {
        let fix = "fix the file or variable named";
        stop(
            findings,
            Finding::fail("configuration", error.to_string(), fix),
        )
    })?;
    let forum = read_forum_files(&gathered, unit.as_ref(), &user, findings)?;
    let extension = match &forum {
        Some(config) => Some(read_forum_database(config, findings).await?),
        None => None,
    };
    let resolved = resolve_settings(gathered, extension.as_ref(), findings)?;
    let host = resolved
        .settings
        .app_host
        .clone()
        .or_else(|| forum.as_ref().and_then(ForumConfig::host));
    let browsers = browsers(
        &resolved.settings,
        forum.as_ref(),
        extension.as_ref(),
        host.clone().unwrap_or_else(|| "127.0.0.1".into()),
    );
    let setup = Setup {
        resolved: &resolved,
        forum: forum.as_ref(),
        extension: extension.as_ref(),
        browsers: &browsers,
        host: host.as_deref(),
        user: &user,
        unit: unit.as_ref(),
        nginx_conf: &input.nginx_conf,
    };
    findings.extend(setup.check().await);
    if let Some(options) = input.live {
        if findings.iter().any(|f| f.status == Status::Fail) {
            findings.push(Finding::fail(
                "live",
                "skipped: fix the failures above first",
                "see above",
            ));
        } else {
            findings.extend(check_live(&resolved.settings, &browsers, &options).await);
        }
    }
    Ok(())
}

/// config.php, if the root is a forum, and whether the service can see and
/// read it (and write a SQLite database beside it).
fn read_forum_files(
    gathered: &Gathered,
    unit: Option<&ServiceUnit>,
    user: &Result<ServiceUser, String>,
    findings: &mut Vec<Finding>,
) -> Result<Option<ForumConfig>, Stop> {
    match gathered.config_php() {
        Ok(Some(config)) => {
            findings.push(Finding::pass(
                "config.php",
                format!(
                    "{} ({} database)",
                    config.path.display(),
                    config.database.driver.name()
                ),
            ));
            let hidden =
                check_hidden_root(&config, unit).or_else(|| check_forum_access(&config, user));
            if let Some(finding) = hidden {
                return Err(stop(findings, finding));
            }
            findings.extend(check_sqlite_writable(&config, unit));
            Ok(Some(config))
        }
        Ok(None) => {
            findings.push(Finding::pass(
                "config.php",
                format!(
                    "no config.php in {}: running standalone from YAML and FLARUM_WS_* settings",
                    gathered.root.display()
                ),
            ));
            Ok(None)
        }
        Err(error) => Err(stop(
            findings,
            Finding::fail("config.php", error.to_string(), error.fix()),
        )),
    }
}

/// The forum's database, and the realtime extension's settings in it.
async fn read_forum_database(
    config: &ForumConfig,
    findings: &mut Vec<Finding>,
) -> Result<ForumSettings, Stop> {
    let database = Database::connect(config).await.map_err(|error| {
        stop(
            findings,
            Finding::fail("database", error.to_string(), error.fix()),
        )
    })?;
    findings.push(Finding::pass("database", "reachable"));
    let read = read_forum_settings(&database, config).await;
    database.close().await;
    let settings = read.map_err(|error| {
        stop(
            findings,
            Finding::fail("settings", error.to_string(), error.fix()),
        )
    })?;
    let source = match settings.extension {
        Extension::Kyrne => "its settings page (the settings table)",
        Extension::Realtime => "config.php's 'websocket' array and the daemon's defaults",
    };
    findings.push(Finding::pass(
        "extension",
        format!(
            "serving {}, configured from {source}",
            settings.extension.name()
        ),
    ));
    Ok(settings)
}

/// Every source merged: the credentials, and each forum setting another
/// source overrides.
fn resolve_settings(
    gathered: Gathered,
    extension: Option<&ForumSettings>,
    findings: &mut Vec<Finding>,
) -> Result<Resolved, Stop> {
    let resolved = gathered.resolve(extension).map_err(|error| {
        stop(
            findings,
            Finding::fail("credentials", error.to_string(), "see the message"),
        )
    })?;
    findings.push(Finding::pass(
        "credentials",
        format!(
            "app id {}, key {}",
            resolved.settings.app.id, resolved.settings.app.key
        ),
    ));
    findings.extend(resolved.overrides.iter().map(|o| {
        Finding::warn(
            "overrides",
            format!(
                "{} comes from {}, which overrides the forum's {}: changing it on the extension's page does nothing",
                o.setting,
                o.by.place_of(o.setting),
                o.forum_place
            ),
            format!(
                "remove {} unless you mean to override the forum",
                o.by.place_of(o.setting)
            ),
        )
    }));
    Ok(resolved)
}

/// What the setup checks judge: the merged settings, the forum, and the
/// service's unit and account.
struct Setup<'a> {
    resolved: &'a Resolved,
    forum: Option<&'a ForumConfig>,
    extension: Option<&'a ForumSettings>,
    browsers: &'a Browsers,
    host: Option<&'a str>,
    user: &'a Result<ServiceUser, String>,
    unit: Option<&'a ServiceUnit>,
    nginx_conf: &'a [PathBuf],
}

impl Setup<'_> {
    /// Every check of the setup; none stops the others.
    async fn check(&self) -> Vec<Finding> {
        let settings = &self.resolved.settings;
        let realtime = self
            .extension
            .is_some_and(|e| e.extension == Extension::Realtime);
        let forum_root = self.forum.and_then(|f| f.path.parent());
        let socket_unit = socket_unit();
        let mut findings = vec![check_port(settings, forum_root, socket_unit.as_ref()).await];
        findings.extend(check_restarts(
            &settings.host,
            settings.port,
            socket_unit.as_ref(),
        ));
        if let Some(config) = self.forum.filter(|_| realtime) {
            findings.extend(check_websocket_keys(config));
        }
        findings.push(check_bind_address(settings, realtime));
        findings.extend(check_scheme(settings, self.forum, self.extension));
        findings.extend(check_cloudflare(settings, self.browsers, realtime));
        findings.push(check_origins(self.resolved));
        findings.push(check_connection_limits(settings));
        let nginx_files = if self.nginx_conf.is_empty() {
            default_files(self.forum.and_then(|f| f.path.parent()))
        } else {
            self.nginx_conf.to_vec()
        };
        findings.extend(check_nginx_timeouts(
            &nginx_files,
            settings.port,
            settings.activity_timeout,
            settings.pong_timeout,
        ));
        findings.extend(check_nginx_client_address(&nginx_files, settings));
        findings.extend(check_redis(settings).await);
        findings.extend(check_webhooks(settings).await);
        findings.extend(check_privileged_port(settings.port, self.user, self.unit));
        findings.extend(check_certificate(settings, self.host, self.user));
        if settings.reverse_proxy && self.resolved.effective.tls_cert.is_some() {
            findings.push(Finding::pass(
                "certificate",
                "not used: the reverse proxy terminates TLS",
            ));
        }
        findings
    }
}

/// What the forum's pages and its PHP side do: on Flarum 2 the
/// `js-client-*` and `php-client-*` settings of config.php, on Flarum 1
/// the extension's host and port (over TLS when the forum is https or
/// "Force secure" is on); the Origin is the forum's in both.
fn browsers(
    settings: &Settings,
    forum: Option<&ForumConfig>,
    extension: Option<&ForumSettings>,
    host: String,
) -> Browsers {
    let origin = forum
        .and_then(|f| f.url.as_deref())
        .and_then(crate::forum::origin_of);
    match (forum, extension) {
        (Some(forum), Some(extension)) if extension.extension == Extension::Realtime => {
            let js = realtime_client(forum, "js");
            Browsers {
                host: js.host.clone(),
                port: Some((js.port, js.secure)),
                origin,
                php_side: Some(realtime_client(forum, "php")),
            }
        }
        (Some(forum), Some(extension)) => Browsers {
            host,
            port: kyrne_browser_port(settings, forum, extension),
            origin,
            php_side: None,
        },
        _ => Browsers {
            host,
            port: None,
            origin,
            php_side: None,
        },
    }
}

/// Whether the service's account can read config.php (and a SQLite
/// forum's database file): `check` usually runs as root, which reads
/// anything, while the service runs as `User=` of its unit.
fn check_forum_access(config: &ForumConfig, user: &Result<ServiceUser, String>) -> Option<Finding> {
    let user = user.as_ref().ok()?;
    let mut files = vec![config.path.clone()];
    if config.database.driver == Driver::Sqlite {
        files.push(PathBuf::from(&config.database.database));
    }
    files.iter().find_map(|file| {
        let blocked = can_read(&user.account, file).err()?;
        if matches!(blocked, Blocked::Missing(_)) {
            return None; // the database check names a missing SQLite file
        }
        Some(user.blocked(&blocked))
    })
}

/// With `redis_url`: whether Redis answers, and how many nodes listen.
async fn check_redis(settings: &Settings) -> Option<Finding> {
    let url = settings.redis_url.as_ref()?.expose();
    let shown = cluster::describe_url(url);
    if let Err(problem) = cluster::check_url(url) {
        return Some(Finding::fail(
            "redis",
            problem,
            "write it as redis://[:password@]host:port[/db]",
        ));
    }
    Some(match cluster::probe(url, &settings.redis_prefix).await {
        Ok(nodes) => Finding::pass(
            "redis",
            format!(
                "Redis at {shown} answers; {nodes} flarum-ws node(s) listen on {}:bus",
                settings.redis_prefix
            ),
        ),
        Err(problem) => Finding::fail(
            "redis",
            format!("Redis at {shown} does not answer: {problem}"),
            "start Redis (systemctl start redis-server) or fix redis_url; without it the nodes serve only their own clients",
        ),
    })
}

/// A port below the unprivileged range needs root or the capability to
/// bind it; the service's account usually has neither (www-data in the
/// shipped unit), whoever runs `check`.
fn check_privileged_port(
    port: u16,
    user: &Result<ServiceUser, String>,
    unit: Option<&ServiceUnit>,
) -> Option<Finding> {
    let first_unprivileged =
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
            .ok()
            .and_then(|text| text.trim().parse::<u16>().ok())
            .unwrap_or(1024);
    if port == 0 || port >= first_unprivileged {
        return None;
    }
    let Ok(user) = user else {
        return None;
    };
    if user.account.uid == 0 {
        return None;
    }
    let capable = unit.is_some_and(|unit| {
        unit.values("AmbientCapabilities")
            .any(|(value, _)| value.contains("CAP_NET_BIND_SERVICE"))
    });
    if capable {
        return None;
    }
    Some(Finding::fail(
        "port",
        format!(
            "port {port} is below {first_unprivileged}: {} ({}) cannot bind it, so the service would fail to start",
            user.account.name, user.source
        ),
        format!(
            "choose a port of {first_unprivileged} or more (and put a proxy on {port}), or let the service bind it: systemctl edit flarum-ws, then [Service] AmbientCapabilities=CAP_NET_BIND_SERVICE"
        ),
    ))
}

/// Keys of config.php's `websocket` array that flarum/realtime does not
/// read: a typo there changes nothing, silently.
fn check_websocket_keys(config: &ForumConfig) -> Vec<Finding> {
    crate::forum::unknown_websocket_keys(&config.websocket)
        .into_iter()
        .map(|(key, nearest)| {
            let instead = match nearest {
                Some(known) => format!("did you mean '{known}'? rename it"),
                None => format!(
                    "remove it; the keys read are {}",
                    crate::forum::WEBSOCKET_KEYS.join(", ")
                ),
            };
            Finding::warn(
                "config.php",
                format!(
                    "{}: 'websocket' => ['{key}' => …] is not a setting flarum/realtime (or flarum-ws) reads, so it changes nothing",
                    config.path.display()
                ),
                format!("{instead} in config.php's 'websocket' array"),
            )
        })
        .collect()
}

/// The admission rule in force: everyone while there is room, then the
/// busiest addresses refused first; and whether one address could still
/// take every place left.
fn check_connection_limits(settings: &Settings) -> Finding {
    let limits = &settings.limits;
    let (max, per_ip) = (limits.max_connections, limits.max_connections_per_ip);
    let high_water = high_water_mark(max);
    let band = max - high_water;
    let behind = if settings.trusted_proxies.is_empty() {
        String::new()
    } else {
        format!(
            "; behind a trusted proxy, the address it names in {} (a proxy that names none stands for its clients)",
            settings.client_address_header.header_name()
        )
    };
    let rule = format!(
        "up to {max} websockets in all; below {high_water} open ({HIGH_WATER_PERCENT} %) every address is admitted, however many tabs share it (a school, an office); past that, an address may hold {per_ip}, fewer as the last places go, so the busiest addresses are refused first{behind}"
    );
    if per_ip > band {
        return Finding::warn(
            "connections",
            format!(
                "{rule}: with max_connections_per_ip above the {band} places past the high-water mark, one address can take every place left, and everyone else is refused (4100)"
            ),
            format!(
                "set max_connections_per_ip to at most {band}, e.g. FLARUM_WS_MAX_CONNECTIONS_PER_IP={} in /etc/default/flarum-ws",
                (band / 2).max(1)
            ),
        );
    }
    Finding::pass("connections", rule)
}

fn is_loopback(host: &str) -> bool {
    host.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

fn check_bind_address(settings: &Settings, realtime: bool) -> Finding {
    if realtime && is_loopback(&settings.host) {
        return Finding::pass(
            "bind address",
            format!(
                "{}:{}: behind a local proxy that serves the browsers' port (flarum-ws nginx-snippet)",
                settings.host, settings.port
            ),
        );
    }
    match (settings.reverse_proxy, is_loopback(&settings.host)) {
        (true, true) => Finding::pass(
            "bind address",
            format!("{}: only the local proxy can connect", settings.host),
        ),
        (true, false) => Finding::warn(
            "bind address",
            format!(
                "reverse-proxy mode is on but the server listens on {}, reachable around the proxy",
                settings.host
            ),
            "bind 127.0.0.1 (remove the host override) so only nginx can connect",
        ),
        (false, true) => Finding::fail(
            "bind address",
            format!(
                "the server listens on {} only, so browsers cannot reach it",
                settings.host
            ),
            "turn on \"Reverse Proxy Support\" and proxy with nginx, or bind 0.0.0.0",
        ),
        (false, false) => Finding::pass(
            "bind address",
            format!(
                "{}: browsers connect to port {} directly",
                settings.host, settings.port
            ),
        ),
    }
}

/// An https forum needs wss://: a browser on an https page never opens a
/// plain ws:// connection, so a plain port without a proxy reaches nobody.
/// The Kyrne extension's "Force secure" switch asks the same of an http
/// forum: its pages open wss:// and its PHP side posts over https://.
fn check_scheme(
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
fn realtime_scheme(settings: &Settings, url: &str) -> Finding {
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
fn kyrne_browser_port(
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

fn check_origins(resolved: &Resolved) -> Finding {
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
fn check_cloudflare(settings: &Settings, browsers: &Browsers, realtime: bool) -> Option<Finding> {
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
