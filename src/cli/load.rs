//! Gathering settings for a command: flags, environment, `.env`, YAML and,
//! when run from a forum, config.php and the settings table.

use anyhow::Context;

use super::{Failure, SourceArgs};
use crate::config::{self, Resolved};
use crate::forum::{self, Forum};

/// Resolved settings and the forum they partly came from.
pub struct Loaded {
    pub resolved: Resolved,
    pub forum: Option<Forum>,
}

/// Reads every source; errors are worded for the admin.
pub async fn load(args: &SourceArgs) -> Result<Loaded, Failure> {
    let flags = args.flags();
    let cwd = std::env::current_dir()
        .context("cannot read the working directory")
        .map_err(Failure::user)?;
    let mut sources = config::load_sources(flags, args.config.clone(), &cwd, std::env::vars())
        .map_err(Failure::user)?;
    let (root, explicit) = match args.root.clone().or_else(|| sources.root.clone()) {
        Some(root) => (cwd.join(root), true),
        None => (cwd, false),
    };
    let forum = forum::load_forum(&root, explicit).await?;
    sources.forum = forum.as_ref().map(|forum| forum.settings.layer.clone());
    let resolved = config::resolve(sources).map_err(Failure::user)?;
    Ok(Loaded { resolved, forum })
}

/// A current-thread runtime for commands that only need async briefly.
pub fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
        .map_err(Failure::unexpected)
}
