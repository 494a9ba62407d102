//! Command-line interface: clap types live here and nowhere else; each
//! subcommand turns its arguments into plain settings and calls the library.

mod check;
mod config;
mod generate;
mod load;
mod nginx_snippet;
mod reload;
mod serve;
mod trigger;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// A Pusher-compatible realtime server for Flarum forums.
#[derive(Debug, Parser)]
#[command(name = "flarum-ws", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the Pusher protocol (websocket and HTTP API) on one port.
    Serve(ServeArgs),
    /// Print every effective setting and where it came from (secrets redacted).
    Config(SourceArgs),
    /// Send an event through the HTTP API with the forum's credentials.
    Trigger(TriggerArgs),
    /// Print the reverse-proxy configuration for this forum (nginx, Caddy or Apache).
    NginxSnippet(SnippetArgs),
    /// Check the setup and say what is wrong and how to fix it (exit 0 ok, 1 failure, 2 could not run).
    Check(CheckArgs),
    /// Write the man pages or the shell completions into a folder (for packagers).
    #[command(hide = true)]
    Generate(GenerateArgs),
}

/// `flarum-ws generate`: what to write, and where.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// What to write.
    #[arg(value_enum)]
    pub what: Generated,
    /// The folder to write it into (created when missing).
    pub dir: PathBuf,
}

/// What `generate` writes: man pages or shell completions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Generated {
    /// flarum-ws.1 and a page per subcommand.
    Man,
    /// Completions for bash, zsh and fish.
    Completions,
}

/// `flarum-ws check`'s options.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Also connect as a browser would, subscribe, trigger an event as the forum would and receive it.
    #[arg(long)]
    pub live: bool,
    /// With --live, connect to this host:port instead of the browser's host (the name is kept for TLS).
    #[arg(long, value_name = "HOST:PORT")]
    pub via: Option<String>,
    /// With --live, where this machine's reverse proxy listens (default 127.0.0.1:443); asked directly when an upgrade is refused, to tell its faults from those of a proxy in front of it.
    #[arg(long, value_name = "HOST:PORT")]
    pub proxy: Option<String>,
    /// With --live, then hold the connection idle for SECONDS (75 when not given) as a forum page's pusher-js would, to find a proxy that cuts idle websockets; implies --live.
    #[arg(long, value_name = "SECONDS", num_args = 0..=1, default_missing_value = "75", value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub idle: Option<u64>,
    /// Read these nginx configuration files, each on its own, instead of asking nginx for the configuration it runs with (nginx -T).
    #[arg(long = "nginx-conf", value_name = "FILE")]
    pub nginx_conf: Vec<std::path::PathBuf>,
    /// The main configuration file nginx runs with, when it is not nginx's default (nginx -T -c FILE).
    #[arg(
        long = "nginx-main",
        value_name = "FILE",
        conflicts_with = "nginx_conf"
    )]
    pub nginx_main: Option<std::path::PathBuf>,
    /// Judge as this systemd unit runs the server (its EnvironmentFile, Environment= and WorkingDirectory=), instead of the installed flarum-ws.service and its drop-ins.
    #[arg(long, value_name = "FILE")]
    pub unit: Option<std::path::PathBuf>,
    /// Print the findings as JSON.
    #[arg(long)]
    pub json: bool,
    /// Judge access to the certificate files as this account (default: User= of the installed flarum-ws.service, else the account running check).
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
    #[command(flatten)]
    pub sources: SourceArgs,
}

/// The reverse proxy `nginx-snippet` writes for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProxyFormat {
    Nginx,
    Caddy,
    Apache,
}

/// `flarum-ws nginx-snippet`'s options.
#[derive(Debug, Args)]
pub struct SnippetArgs {
    /// The forum's host name (default: the extension's app_host, else the forum URL's host).
    #[arg(long)]
    pub server_name: Option<String>,
    /// Print a complete nginx server block instead of the pieces to paste.
    #[arg(long)]
    pub full: bool,
    /// Print one `location ^~ /app/` block for a server block that already
    /// serves a site (the default for a forum under a sub-path).
    #[arg(long, conflicts_with = "full")]
    pub beside_site: bool,
    /// `listen` of the complete server block.
    #[arg(long, default_value = "443 ssl")]
    pub listen: String,
    /// Certificate for the complete server block (default: the extension's, else Let's Encrypt's path).
    #[arg(long)]
    pub ssl_certificate: Option<String>,
    /// Key for the complete server block.
    #[arg(long)]
    pub ssl_certificate_key: Option<String>,
    /// The forum's root directory in the paths printed (default: the forum's, else /var/www/flarum).
    #[arg(long)]
    pub forum_root: Option<PathBuf>,
    /// PHP-FPM address for the complete server block.
    #[arg(long, default_value = "unix:/var/run/php/php-fpm.sock")]
    pub php_fpm: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ProxyFormat::Nginx)]
    pub format: ProxyFormat,
    #[command(flatten)]
    pub sources: SourceArgs,
}

/// `flarum-ws trigger`'s arguments: the event to send.
#[derive(Debug, Args)]
pub struct TriggerArgs {
    /// Channel to send on, e.g. `public`.
    pub channel: String,
    /// Event name, e.g. `newPost`.
    pub event: String,
    /// Event data (a string, usually JSON); default `{}`.
    pub data: Option<String>,
    #[command(flatten)]
    pub sources: SourceArgs,
}

/// `flarum-ws serve`'s options.
#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub sources: SourceArgs,
}

/// Where settings come from; shared by every command that reads them.
#[derive(Debug, Clone, Args)]
pub struct SourceArgs {
    /// The Flarum forum's root directory, holding config.php (FLARUM_WS_ROOT;
    /// default: the working directory, when it holds a config.php).
    #[arg(long)]
    pub root: Option<PathBuf>,
    /// Address to bind (FLARUM_WS_HOST; default 0.0.0.0, or 127.0.0.1 in reverse-proxy mode).
    #[arg(long)]
    pub host: Option<String>,
    /// Port for websocket and HTTP API (FLARUM_WS_PORT; default 2083).
    #[arg(long)]
    pub port: Option<u16>,
    /// YAML configuration file (FLARUM_WS_CONFIG).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Log every connection, subscription and message (FLARUM_WS_VERBOSE).
    #[arg(long, short)]
    pub verbose: bool,
    /// Do not write the forum's statistics rows (FLARUM_WS_STATISTICS=false).
    #[arg(long)]
    pub disable_statistics: bool,
    /// Log lines as text or json (FLARUM_WS_LOG_FORMAT; default text).
    #[arg(long, value_name = "text|json", value_parser = ["text", "json"])]
    pub log_format: Option<String>,
    /// Redis shared by several nodes serving as one (FLARUM_WS_REDIS_URL):
    /// redis:// or rediss:// (TLS), redis+sentinel://SENTINELS/MASTER or
    /// redis+cluster://NODES for a Redis Cluster (rediss+ for TLS).
    #[arg(long, value_name = "redis://HOST:PORT")]
    pub redis_url: Option<String>,
    /// Set by flarum-ws itself on a command it runs as flarum-ws.service
    /// runs (through systemd-run): load settings as given, do not ask
    /// systemd again; `check` then reads the admin's side on stdin and
    /// prints JSON.
    #[arg(long, hide = true)]
    pub as_service: bool,
}

impl SourceArgs {
    /// These flags as command-line arguments again, for the judging process
    /// `check` starts as the service.
    pub fn to_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        let mut push = |flag: &str, value: Option<String>| {
            if let Some(value) = value {
                args.push(format!("--{flag}={value}"));
            }
        };
        push("root", self.root.as_ref().map(|p| p.display().to_string()));
        push("host", self.host.clone());
        push("port", self.port.map(|p| p.to_string()));
        push(
            "config",
            self.config.as_ref().map(|p| p.display().to_string()),
        );
        push("log-format", self.log_format.clone());
        push("redis-url", self.redis_url.clone());
        if self.verbose {
            args.push("--verbose".into());
        }
        if self.disable_statistics {
            args.push("--disable-statistics".into());
        }
        args
    }

    /// The settings these flags set, as the highest-precedence source;
    /// every command that reads settings takes its flags from here.
    pub fn flags(&self) -> crate::config::PartialSettings {
        crate::config::PartialSettings {
            host: self.host.clone(),
            port: self.port,
            verbose: self.verbose.then_some(true),
            statistics: self.disable_statistics.then_some(false),
            log_format: self.log_format.clone(),
            redis_url: self.redis_url.clone().map(crate::config::Secret::new),
            ..Default::default()
        }
    }
}

/// How the process ends, the same from every command: 0 success, 1 a
/// user-facing failure (bad configuration, port taken; `check`: a check
/// failed), 2 something unexpected (clap exits 2 too for a command line it
/// cannot parse).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Success = 0,
    Failure = 1,
    Unexpected = 2,
    /// Stopped to be started again (see `reload::RESTART_EXIT_CODE`).
    Restart = 75,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        ExitCode::from(exit as u8)
    }
}

/// An error with the exit code it should end the process with.
#[derive(Debug)]
pub struct Failure {
    pub error: anyhow::Error,
    pub exit: Exit,
}

impl Failure {
    /// A failure the admin can fix (exit code 1): bad settings, a taken port.
    pub fn user(error: impl Into<anyhow::Error>) -> Self {
        Self {
            error: error.into(),
            exit: Exit::Failure,
        }
    }

    /// A failure the admin did not cause (exit code 2): a bug, the machine.
    pub fn unexpected(error: impl Into<anyhow::Error>) -> Self {
        Self {
            error: error.into(),
            exit: Exit::Unexpected,
        }
    }
}

/// An unusable certificate or key is the admin's to fix: the message and
/// the fix, exit 1.
impl From<crate::tls::TlsError> for Failure {
    fn from(error: crate::tls::TlsError) -> Self {
        Self::user(anyhow::anyhow!("{error}\n  fix: {}", error.fix()))
    }
}

/// The forum's config.php or database needs the admin: message and fix.
impl From<crate::forum::ForumError> for Failure {
    fn from(error: crate::forum::ForumError) -> Self {
        Self::user(anyhow::anyhow!("{error}\n  fix: {}", error.fix()))
    }
}

/// A flag, variable or file the admin wrote is wrong: the message says
/// which and how.
impl From<crate::config::ConfigError> for Failure {
    fn from(error: crate::config::ConfigError) -> Self {
        Self::user(error)
    }
}

/// Loading stopped at a stage the admin can fix.
impl From<crate::loading::LoadError> for Failure {
    fn from(error: crate::loading::LoadError) -> Self {
        match error {
            crate::loading::LoadError::Config(error) => error.into(),
            crate::loading::LoadError::Forum(error) => error.into(),
        }
    }
}

/// The server could not be reached: message and fix.
impl From<crate::probe::ProbeError> for Failure {
    fn from(error: crate::probe::ProbeError) -> Self {
        Self::user(anyhow::anyhow!("{error}\n  fix: {}", error.fix()))
    }
}

/// Runs the command the admin typed; its exit code says how it went.
pub fn run(cli: Cli) -> Result<Exit, Failure> {
    match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Config(args) => config::run(args),
        Command::Trigger(args) => trigger::run(args),
        Command::NginxSnippet(args) => nginx_snippet::run(args),
        Command::Check(args) => check::run(args),
        Command::Generate(args) => generate::run(args),
    }
}
