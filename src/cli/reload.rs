//! Applying new settings while connections stay open: on SIGHUP, and for
//! a Flarum 2 forum when flarum/realtime asks its daemon to restart (the
//! halt key in the forum's cache, or extensions enabled or disabled). The
//! daemon exits and relies on its supervisor; flarum-ws reloads in place.
//! What a running server cannot take (its address, port, TLS mode, the
//! Redis link, the webhook senders, the log format: the settings rows
//! marked `=> restart` in config/fields.rs) keeps its old value until a
//! restart; the reload says so, and a forum asking for it gets one.

use std::sync::Arc;
use std::time::Duration;

use super::SourceArgs;
use super::load::load;
use crate::config::{Held, Resolved, hold_restart_settings};
use crate::forum::halt::{take_halt_request, take_redis_halt_request};
use crate::forum::{Database, Extension, Forum, Identities, Visibility};
use crate::server::ServerContext;
use crate::server::realtime::RealtimeForum;
use crate::telemetry::systemd;
use crate::tls::CertStore;

/// How often the forum is asked whether the daemon should restart, as
/// flarum/realtime's daemon does.
const FORUM_POLL: Duration = Duration::from_secs(10);

/// Everything a reload needs.
#[derive(Clone)]
pub struct Reloader {
    pub args: SourceArgs,
    pub ctx: Arc<ServerContext>,
    pub certificates: Option<Arc<CertStore>>,
    /// Every setting as it serves and where it came from: the restart
    /// settings as at startup, the others as last reloaded.
    pub serving: Arc<std::sync::Mutex<Resolved>>,
}

/// What a reload found.
pub enum Reloaded {
    /// Applied; connections kept.
    Applied { restart_needed: bool },
    /// The sources could not be read; the running settings stay.
    Failed,
}

impl Reloader {
    /// Re-reads every source (config.php and the settings table included)
    /// and applies the result; a failed reload keeps what runs.
    pub async fn reload(&self, why: &str) -> Reloaded {
        tracing::info!("{why}, reloading settings");
        systemd::reloading();
        if let Some(certificates) = &self.certificates {
            certificates.request_reload();
        }
        let loaded = match load(&self.args).await {
            Ok(loaded) => loaded,
            Err(failure) => {
                tracing::error!(
                    "reload failed, keeping the current settings: {:#}",
                    failure.error
                );
                systemd::ready("reload failed; running with the previous settings");
                return Reloaded::Failed;
            }
        };
        self.serve_typing(loaded.forum.as_ref()).await;
        let mut serving = self.serving.lock().unwrap_or_else(|p| p.into_inner());
        let (applied, held) = match hold_restart_settings(loaded.resolved, &serving) {
            Ok(applied) => applied,
            Err(error) => {
                tracing::error!(
                    "reload failed, keeping the current settings: with the settings that wait for a restart held back, {error}"
                );
                systemd::ready("reload failed; running with the previous settings");
                return Reloaded::Failed;
            }
        };
        for Held {
            key,
            now,
            from,
            still,
        } in &held
        {
            tracing::warn!(
                "the setting {key} is now {now} ({from}); it takes effect only after a restart (still serving {still}): systemctl restart flarum-ws"
            );
        }
        self.ctx.apply(&applied);
        *serving = applied;
        drop(serving);
        tracing::info!("Settings reloaded; open connections were kept");
        self.ctx.telemetry.mark(
            "reload",
            if held.is_empty() {
                "Settings reloaded".to_owned()
            } else {
                format!(
                    "Settings reloaded; waiting for a restart: {}",
                    held.iter().map(|h| h.key).collect::<Vec<_>>().join(", ")
                )
            },
        );
        systemd::ready("settings reloaded");
        Reloaded::Applied {
            restart_needed: !held.is_empty(),
        }
    }

    /// Turns flarum/realtime's extras (typing relay, index typing, typing
    /// activity) on for such a forum, off otherwise.
    pub async fn serve_typing(&self, forum: Option<&Forum>) {
        let realtime = match forum {
            Some(forum) if forum.settings.extension == Extension::Realtime => {
                match Database::connect(&forum.config).await {
                    Ok(database) => {
                        let settings = &forum.settings;
                        let enabled: Vec<String> = settings
                            .extensions_enabled
                            .as_deref()
                            .and_then(|list| serde_json::from_str(list).ok())
                            .unwrap_or_default();
                        Some(RealtimeForum::new(
                            Identities::new(
                                database.clone(),
                                settings.display_name_driver.as_deref(),
                            ),
                            Visibility::new(database, &enabled),
                            settings.index_typing_restricted,
                        ))
                    }
                    Err(error) => {
                        tracing::warn!(
                            "typing indicators will name nobody, and index typing is off: cannot open the forum database: {error}"
                        );
                        None
                    }
                }
            }
            _ => None,
        };
        self.ctx.realtime.store(realtime);
    }
}

/// Reloads on every SIGHUP. The handler is installed when this is called,
/// before the server says it listens (a SIGHUP's default action would kill
/// it); the waiting runs as a task.
pub fn reload_on_hangup(reloader: Reloader) -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let hangup = signal(SignalKind::hangup());
    async move {
        let Ok(mut hangup) = hangup else {
            tracing::warn!("cannot listen for SIGHUP; settings can only change with a restart");
            return;
        };
        while hangup.recv().await.is_some() {
            reloader.reload("SIGHUP received").await;
        }
    }
}

/// The bytes of config.php, to notice an edit (`None`: unreadable).
async fn config_php_bytes(root: &std::path::Path) -> Option<Vec<u8>> {
    let path = root.join("config.php");
    tokio::task::spawn_blocking(move || std::fs::read(path))
        .await
        .ok()?
        .ok()
}

/// For a Flarum 2 forum: every 10 s, takes a restart request from the
/// forum's cache and notices extensions enabled or disabled; each reloads
/// in place (config.php is followed by [`follow_config_php`]). When the
/// reload needs a new listener, the server
/// stops (connections told to reconnect) and exits with
/// [`RESTART_EXIT_CODE`] for systemd to start it again.
pub async fn follow_the_forum(
    reloader: Reloader,
    database: Database,
    root: std::path::PathBuf,
    mut extensions_enabled: Option<String>,
) {
    let shutdown = reloader.ctx.shutdown.clone();
    let mut database = database;
    let mut config_php = config_php_bytes(&root).await;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(FORUM_POLL) => {}
        }
        let mut why = None;
        let asked = "flarum/realtime asked for a restart (realtime:halt or a changed setting)";
        // Off the runtime: file system work may block (a slow disk, an NFS
        // mount), and every connection shares the runtime's threads.
        let cache_root = root.clone();
        if tokio::task::spawn_blocking(move || take_halt_request(&cache_root))
            .await
            .unwrap_or(false)
        {
            why = Some(asked);
        }
        let settings = reloader.ctx.settings();
        if let Some(url) = &settings.forum_cache_redis_url {
            match take_redis_halt_request(url.expose(), &settings.forum_cache_prefix).await {
                Ok(true) => why = Some(asked),
                Ok(false) => {}
                Err(problem) => tracing::warn!(
                    "cannot read the forum's Redis cache (forum_cache_redis_url) for restart requests: {problem}"
                ),
            }
        }
        match database.extensions_enabled().await {
            Ok(now) if now != extensions_enabled => {
                extensions_enabled = now;
                why = why.or(Some("extensions were enabled or disabled in the forum"));
            }
            Ok(_) => {}
            Err(error) => tracing::debug!("cannot read extensions_enabled: {error}"),
        }
        // config.php itself is followed by `follow_config_php`; here an
        // edit only means the database connection may need its new password.
        let now = config_php_bytes(&root).await;
        if now.is_some() && now != config_php {
            config_php = now;
            match crate::forum::read_config_php(&root.join("config.php")) {
                Ok(config) => match Database::connect(&config).await {
                    Ok(reconnected) => database = reconnected,
                    Err(error) => tracing::warn!("after config.php changed: {error}"),
                },
                Err(error) => tracing::warn!("after config.php changed: {error}"),
            }
        }
        let Some(why) = why else {
            continue;
        };
        if reload_or_restart(&reloader, why).await {
            return;
        }
    }
}

/// Reloads; when the new settings need a new listener, stops the server to
/// be started again and says `true`.
async fn reload_or_restart(reloader: &Reloader, why: &str) -> bool {
    if let Reloaded::Applied {
        restart_needed: true,
    } = reloader.reload(why).await
    {
        tracing::warn!(
            "Restarting to listen where the forum now says (exit code {RESTART_EXIT_CODE}; systemd starts flarum-ws again)"
        );
        reloader.ctx.request_restart();
        reloader.ctx.shutdown.cancel();
        return true;
    }
    false
}

/// How often config.php is looked at, unless a request asks sooner.
const CONFIG_PHP_POLL: Duration = Duration::from_secs(1);

/// The least time between two looks, however many requests ask (a flood
/// of wrong signatures reads the file four times a second at most).
const CONFIG_PHP_MIN_GAP: Duration = Duration::from_millis(250);

/// For a Flarum 2 forum: follows config.php, where flarum/realtime's app
/// secret comes from (the md5 of the database password, or `app-secret`),
/// once a second and whenever a request's signature fails (`watch`): an
/// edit reloads at once, so a password rotation costs the forum's events
/// nothing (those signed just before it pass on the previous secret).
pub async fn follow_config_php(
    reloader: Reloader,
    root: std::path::PathBuf,
    watch: Arc<crate::server::secret_rotation::SecretWatch>,
) {
    let shutdown = reloader.ctx.shutdown.clone();
    let mut seen = config_php_bytes(&root).await;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(CONFIG_PHP_POLL) => {}
            _ = watch.asked() => {}
        }
        let begun = watch.begin();
        let now = config_php_bytes(&root).await;
        if now.is_some() && now != seen {
            seen = now;
            if reload_or_restart(
                &reloader,
                "config.php changed (with a new database password comes a new app secret)",
            )
            .await
            {
                watch.looked(begun);
                return;
            }
        }
        watch.looked(begun);
        tokio::time::sleep(CONFIG_PHP_MIN_GAP).await;
    }
}

/// The exit code of a restart the forum asked for (EX_TEMPFAIL): not 0, so
/// that systemd's `Restart=on-failure` starts the service again.
pub const RESTART_EXIT_CODE: u8 = 75;
