//! `flarum-ws generate`: writes the man pages and the shell completions from
//! the clap definitions themselves, so neither can drift from the real flags.
//! Packaging (`packaging/build.sh`) runs it on the binary it just built; it
//! is hidden from `--help` because admins get its output with the package.

use std::path::Path;

use anyhow::Context;
use clap::CommandFactory;
use clap_complete::Shell;

use super::{Cli, Exit, Failure, GenerateArgs, Generated};

pub fn run(args: GenerateArgs) -> Result<Exit, Failure> {
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("cannot create {}", args.dir.display()))
        .map_err(Failure::user)?;
    match args.what {
        Generated::Man => man_pages(&args.dir),
        Generated::Completions => completions(&args.dir),
    }
    .with_context(|| format!("cannot write into {}", args.dir.display()))
    .map_err(Failure::user)?;
    Ok(Exit::Success)
}

/// `flarum-ws.1` and one page per subcommand (`flarum-ws-serve.1`, ...).
fn man_pages(dir: &Path) -> std::io::Result<()> {
    clap_mangen::generate_to(Cli::command(), dir)
}

/// The files each shell loads from its vendor folder: `flarum-ws.bash`,
/// `_flarum-ws` (zsh) and `flarum-ws.fish`.
fn completions(dir: &Path) -> std::io::Result<()> {
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut Cli::command(), "flarum-ws", dir)?;
    }
    Ok(())
}
