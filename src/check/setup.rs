//! Running the checks in order; later checks run only when the earlier ones
//! they depend on passed.

use std::path::PathBuf;

use super::as_service::Context;
use super::browsers::{check_cloudflare, check_origins, check_scheme, kyrne_browser_port};
use super::by_systemd::judge_by_systemd;
use super::certificate::check_certificate;
use super::flarum2_keys::check_websocket_keys;
use super::listening::{check_bind_address, check_connection_limits, check_privileged_port};
use super::live::{Browsers, LiveOptions, check_live};
use super::nginx_config::{self, NginxConfig, NginxDump};
use super::nginx_timeout::{
    check_nginx_client_address, check_nginx_timeouts, default_files, proxied_at,
};
use super::other_forum::check_other_forum;
use super::port::check_port;
use super::queue::check_queue;
use super::redis::check_redis;
use super::restarts::{check_restarts, socket_unit};
use super::running::check_running;
use super::sandbox::{check_hidden_root, check_sqlite_writable, check_sqlite_writable_here};
use super::service_user::{ServiceUser, service_user};
use super::unit::{ServiceUnit, UNIT_DIRECTORIES, unit_files};
use super::unit_env::{UnitEnvironment, check_config_variables, check_shell_only, judge};
use super::webhooks::check_webhooks;
use super::{Finding, Status};
use crate::access::{Blocked, can_read};
use crate::config::{PartialSettings, Resolved, Settings};
use crate::forum::{
    Database, Driver, Extension, ForumConfig, ForumSettings, read_forum_settings, realtime_client,
};
use crate::loading::{Gathered, LoadInput, gather};

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
    /// `--nginx-conf`: the nginx files to read (empty: ask nginx).
    pub nginx_conf: Vec<PathBuf>,
    /// `--nginx-main`: the main file nginx runs with (default: nginx's own).
    pub nginx_main: Option<PathBuf>,
    /// `--unit`: the service's unit file (default: the installed
    /// flarum-ws.service and its drop-ins, if any).
    pub unit: Option<PathBuf>,
    /// The settings flags given, as arguments (they replace the unit's
    /// `ExecStart=` flags when the check is judged by systemd).
    pub source_args: Vec<String>,
    /// Whether this process is the admin's `check` or the one systemd runs
    /// as the service.
    pub judging: Judging,
}

/// Who judges.
pub enum Judging {
    /// The admin's `check`: asks systemd to judge as the service where it
    /// can, else reads the unit files.
    Admin,
    /// The judging process systemd started as the service (`--as-service`).
    AsService(Context),
}

/// What a run of the checks found, and the forum root it judged.
#[derive(Default)]
pub struct Outcome {
    pub findings: Vec<Finding>,
    pub root: Option<PathBuf>,
}

/// Runs every check that can run and returns all findings.
pub async fn run_checks(input: CheckInput) -> Outcome {
    let mut outcome = Outcome::default();
    let cwd = input.cwd.clone();
    let root_named = input.root.is_some();
    let admin = matches!(input.judging, Judging::Admin);
    // A stage that cannot go on has said why in `findings`.
    let _ = run_stages(input, &mut outcome).await;
    if admin && !root_named {
        outcome
            .findings
            .extend(check_other_forum(&cwd, outcome.root.as_deref()));
    }
    outcome
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
async fn run_stages(input: CheckInput, outcome: &mut Outcome) -> Result<(), Stop> {
    let findings = &mut outcome.findings;
    let mut imitated = input
        .unit
        .as_ref()
        .map(|unit| format!("--unit names {}", unit.display()));
    if matches!(input.judging, Judging::Admin) && input.unit.is_none() {
        match judge_by_systemd(&input, findings) {
            Ok(root) => {
                outcome.root = root;
                return Ok(());
            }
            Err(why) => imitated = why,
        }
    }
    let (unit, user) = match &input.judging {
        Judging::AsService(context) => {
            findings.extend(check_shell_only(&context.shell, &input.environment));
            (None, Ok(ServiceUser::this_process()))
        }
        Judging::Admin => {
            let unit = ServiceUnit::read(&match &input.unit {
                Some(unit) => vec![unit.clone()],
                None => unit_files(&UNIT_DIRECTORIES, "flarum-ws.service"),
            });
            let user = service_user(input.user.as_deref(), unit.as_ref());
            (unit, user)
        }
    };
    // Judged as the service will run: its unit's environment and working
    // directory, when a unit is installed (or named) and systemd could not
    // be asked.
    let (environment, cwd) = match &unit {
        Some(unit) => {
            let judged = judge(
                &UnitEnvironment::read(unit),
                input.environment,
                &input.cwd,
                input.root.is_some(),
                imitated.as_deref().unwrap_or("no systemd answered"),
            );
            findings.extend(judged.findings);
            (judged.environment, judged.cwd)
        }
        None => (input.environment, input.cwd),
    };
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
    outcome.root = Some(gathered.root.clone());
    let as_service = matches!(input.judging, Judging::AsService(_));
    let nginx_dump = match &input.judging {
        _ if !input.nginx_conf.is_empty() => None,
        Judging::AsService(context) => context.nginx.clone(),
        Judging::Admin => nginx_config::dump(input.nginx_main.as_deref()).transpose(),
    };
    let forum = read_forum_files(&gathered, unit.as_ref(), &user, as_service, findings)?;
    if let (Judging::AsService(context), Some(config)) = (&input.judging, &forum) {
        findings.extend(check_config_variables(&context.shell, config));
    }
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
    let nginx = nginx_config(
        &input.nginx_conf,
        nginx_dump.as_ref(),
        forum.as_ref(),
        findings,
    );
    let proxied_at = proxied_at(&nginx, resolved.settings.port);
    let browsers = browsers(
        &resolved.settings,
        forum.as_ref(),
        extension.as_ref(),
        host.clone().unwrap_or_else(|| "127.0.0.1".into()),
        proxied_at.is_some(),
    );
    let setup = Setup {
        resolved: &resolved,
        forum: forum.as_ref(),
        extension: extension.as_ref(),
        browsers: &browsers,
        host: host.as_deref(),
        user: &user,
        unit: unit.as_ref(),
        nginx: &nginx,
        proxied_at: proxied_at.as_deref(),
        as_service,
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
    as_service: bool,
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
            findings.extend(if as_service {
                check_sqlite_writable_here(&config)
            } else {
                check_sqlite_writable(&config, unit)
            });
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
        Err(error) => {
            let message = error.to_string();
            // Evaluated by PHP as the service's user: a file config.php
            // requires that only root may read fails here as at start.
            let fix = match user {
                Ok(user) if as_service && message.contains("Permission denied") => format!(
                    "config.php runs as {}, who may not read a file it needs (named above): chgrp {} FILE && chmod g+r FILE, or keep the secret in /etc/default/flarum-ws and read it with getenv()",
                    user.account.name, user.account.group
                ),
                _ => error.fix(),
            };
            Err(stop(findings, Finding::fail("config.php", message, fix)))
        }
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
    if read
        .as_ref()
        .is_ok_and(|settings| settings.extension == Extension::Realtime)
    {
        findings.push(check_queue(&database, config).await);
    }
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
    nginx: &'a NginxConfig,
    /// Where nginx proxies to flarum-ws's port (`file:line`), if it does.
    proxied_at: Option<&'a str>,
    /// Judging as the service (its capabilities are real: the port check's
    /// trial bind answers whether it may bind a low port).
    as_service: bool,
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
        findings.extend(check_scheme(
            settings,
            self.forum,
            self.extension,
            self.proxied_at,
        ));
        findings.extend(check_cloudflare(settings, self.browsers, realtime).await);
        findings.push(check_origins(self.resolved));
        findings.push(check_connection_limits(settings));
        let nginx = self.nginx;
        findings.extend(check_nginx_timeouts(
            nginx,
            settings.port,
            settings.activity_timeout,
            settings.pong_timeout,
            settings.reverse_proxy,
        ));
        findings.extend(check_nginx_client_address(nginx, settings));
        findings.extend(check_running(self.resolved).await);
        findings.extend(check_redis(settings).await);
        findings.extend(check_webhooks(settings).await);
        if !self.as_service {
            findings.extend(check_privileged_port(settings.port, self.user, self.unit));
        }
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

/// nginx's configuration: the files `--nginx-conf` names, else nginx's own
/// (`nginx -T`), else the usual files each on its own (with a warning when
/// nginx refused to print it).
fn nginx_config(
    named: &[PathBuf],
    dump: Option<&Result<NginxDump, String>>,
    forum: Option<&ForumConfig>,
    findings: &mut Vec<Finding>,
) -> NginxConfig {
    if !named.is_empty() {
        return NginxConfig::from_files(named);
    }
    match dump {
        Some(Ok(dump)) => return NginxConfig::from_dump(dump),
        Some(Err(why)) => findings.push(Finding::warn(
            "nginx",
            format!("{why}; its files were read each on its own instead (includes not followed)"),
            "fix what nginx -t says, then systemctl reload nginx",
        )),
        None => {}
    }
    NginxConfig::from_files(&default_files(forum.and_then(|f| f.path.parent())))
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
    proxied: bool,
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
            port: kyrne_browser_port(settings, forum, extension, proxied),
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
