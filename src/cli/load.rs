//! Loading settings for a command from its flags and the process's
//! environment and working directory (the stages are `crate::loading`'s).

use anyhow::Context;

use super::{Exit, Failure, SourceArgs};
pub use crate::loading::Loaded;
use crate::loading::{LoadInput, load as load_stages};

/// Reads every source; errors are worded for the admin.
pub async fn load(args: &SourceArgs) -> Result<Loaded, Failure> {
    let cwd = std::env::current_dir()
        .context("cannot read the working directory")
        .map_err(Failure::user)?;
    let input = LoadInput {
        flags: args.flags(),
        config: args.config.clone(),
        root: args.root.clone(),
        cwd,
        environment: std::env::vars().collect(),
    };
    Ok(load_stages(input).await?)
}

/// Whether this command should take its settings as flarum-ws.service has
/// them: no settings source named, and not already run as the service.
fn as_the_service(args: &SourceArgs) -> bool {
    !args.as_service && args.to_args().is_empty()
}

/// `config`, `trigger` and `nginx-snippet` see what the service sees, as
/// `check` does: as root where systemd runs flarum-ws.service, the command
/// itself is run again by systemd with the service's environment, user and
/// working directory (`Some` with its exit). `None`: run here.
pub fn run_as_the_service(subcommand: &str, args: &SourceArgs) -> Option<Exit> {
    if !as_the_service(args) || !nix::unistd::Uid::effective().is_root() {
        return None;
    }
    let view = crate::check::service_view().ok()?;
    let own: Vec<String> = std::env::args()
        .skip_while(|arg| arg != subcommand)
        .skip(1)
        .collect();
    let argv = view.command_line(subcommand, &[], &own)?;
    if !std::path::Path::new(&argv[0]).is_file() {
        return None;
    }
    eprintln!(
        "flarum-ws: {subcommand} with the settings flarum-ws.service runs with (systemd ran it as the service; name --root or --config for others)"
    );
    let status = view.transient(subcommand, &argv).status().ok()?;
    Some(match status.code() {
        Some(0) => Exit::Success,
        Some(1) => Exit::Failure,
        _ => Exit::Unexpected,
    })
}

/// Reads every source as [`load`] does, but where flarum-ws.service is
/// installed and no source is named, with the service's environment and
/// working directory read from its unit files (where systemd could not be
/// asked: not root, or no systemd).
pub async fn load_as_the_service(args: &SourceArgs) -> Result<Loaded, Failure> {
    let cwd = std::env::current_dir()
        .context("cannot read the working directory")
        .map_err(Failure::user)?;
    let shell: Vec<(String, String)> = std::env::vars().collect();
    let (environment, cwd) = match as_the_service(args)
        .then(|| crate::check::service_environment(shell.clone(), &cwd))
        .flatten()
    {
        Some(service) => {
            eprintln!(
                "flarum-ws: settings as {} gives them, read from its files (name --root or --config for others)",
                service.unit.display()
            );
            (service.environment, service.cwd)
        }
        None => (shell, cwd),
    };
    let input = LoadInput {
        flags: args.flags(),
        config: args.config.clone(),
        root: args.root.clone(),
        cwd,
        environment,
    };
    Ok(load_stages(input).await?)
}

/// A current-thread runtime for commands that only need async briefly.
pub fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
        .map_err(Failure::unexpected)
}
