//! Loading settings for a command from its flags and the process's
//! environment and working directory (the stages are `crate::loading`'s).

use anyhow::Context;

use super::{Failure, SourceArgs};
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

/// A current-thread runtime for commands that only need async briefly.
pub fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
        .map_err(Failure::unexpected)
}
