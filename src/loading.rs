//! Loading what a command runs with, in stages: the sources (flags,
//! environment, `.env`, YAML), the forum root, config.php, the forum
//! database, its settings, and the merge. `check` walks the stages itself
//! to report each; the other commands call [`load`], which stops at the
//! first problem.

use std::path::PathBuf;

use crate::config::{self, ConfigError, PartialSettings, Resolved, Sources};
use crate::forum::{
    Database, Forum, ForumConfig, ForumError, ForumSettings, find_config_php, read_forum_settings,
};

/// Where the sources are.
pub struct LoadInput {
    pub flags: PartialSettings,
    /// `--config FILE`.
    pub config: Option<PathBuf>,
    /// `--root DIR`.
    pub root: Option<PathBuf>,
    pub cwd: PathBuf,
    pub environment: Vec<(String, String)>,
}

/// The sources, and the forum root they name (or the working directory).
pub struct Gathered {
    pub sources: Sources,
    pub root: PathBuf,
    /// What named the root (`--root`, `FLARUM_WS_ROOT`), if anything: a
    /// named root must hold config.php, and a wrong one is blamed on it.
    pub named_by: Option<String>,
}

/// Stage one: every source but the forum.
pub fn gather(input: LoadInput) -> Result<Gathered, ConfigError> {
    let sources = config::load_sources(input.flags, input.config, &input.cwd, input.environment)?;
    let named = match input.root {
        Some(root) => Some((root, "--root".to_owned())),
        None => sources.root.clone(),
    };
    let (root, named_by) = match named {
        Some((root, by)) => (input.cwd.join(root), Some(by)),
        None => (input.cwd, None),
    };
    Ok(Gathered {
        sources,
        root,
        named_by,
    })
}

impl Gathered {
    /// Stage two: config.php, if the root is a forum.
    pub fn config_php(&self) -> Result<Option<ForumConfig>, ForumError> {
        find_config_php(&self.root, self.named_by.as_deref())
    }

    /// The last stage: every source merged, the forum's settings included.
    pub fn resolve(mut self, forum: Option<&ForumSettings>) -> Result<Resolved, ConfigError> {
        self.sources.forum = forum.map(|settings| settings.layer.clone());
        config::resolve(self.sources)
    }
}

/// Stages three and four: the forum database and its settings.
pub async fn forum_settings(config: &ForumConfig) -> Result<ForumSettings, ForumError> {
    let database = Database::connect(config).await?;
    let settings = read_forum_settings(&database, config).await;
    database.close().await;
    settings
}

/// Why loading stopped.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Forum(#[from] ForumError),
}

/// Resolved settings and the forum they partly came from.
pub struct Loaded {
    pub resolved: Resolved,
    pub forum: Option<Forum>,
}

/// Every stage in order, stopping at the first problem.
pub async fn load(input: LoadInput) -> Result<Loaded, LoadError> {
    let gathered = gather(input)?;
    let forum = match gathered.config_php()? {
        Some(config) => {
            let settings = forum_settings(&config).await?;
            Some(Forum { config, settings })
        }
        None => None,
    };
    let resolved = gathered.resolve(forum.as_ref().map(|f| &f.settings))?;
    Ok(Loaded { resolved, forum })
}
