//! `flarum-ws generate`: writes the man pages and the shell completions from
//! the clap definitions themselves, so neither can drift from the real flags.
//! Packaging (`packaging/build.sh`) runs it on the binary it just built; it
//! is hidden from `--help` because admins get its output with the package.

use std::path::Path;

use anyhow::Context;
use clap::CommandFactory;
use clap_complete::Shell;
use roff::{Roff, bold, roman};

use crate::config::ROWS;

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

/// `flarum-ws.1` and one page per subcommand (`flarum-ws-serve.1`, ...),
/// each from clap's definitions followed by ENVIRONMENT, FILES and EXIT
/// STATUS, which clap does not know about.
fn man_pages(dir: &Path) -> std::io::Result<()> {
    let mut cli = Cli::command().disable_help_subcommand(true);
    cli.build();
    man_page(&cli, None, dir)?;
    for command in cli.get_subcommands().filter(|c| !c.is_hide_set()) {
        man_page(command, Some(command.get_name()), dir)?;
    }
    Ok(())
}

fn man_page(command: &clap::Command, subcommand: Option<&str>, dir: &Path) -> std::io::Result<()> {
    let man = clap_mangen::Man::new(command.clone());
    let mut page = Vec::new();
    man.render(&mut page)?;
    page.extend_from_slice(man_sections(subcommand).render().as_bytes());
    std::fs::write(dir.join(man.get_filename()), page)
}

/// One `.TP` entry: a bold term and its description.
fn entry(roff: &mut Roff, term: &str, description: &str) {
    roff.control("TP", [])
        .text([bold(term)])
        .text([roman(description)]);
}

/// Exit 2, the same from every command.
const USAGE_OR_UNEXPECTED: &str =
    "A command line it cannot parse (the message names the option), or an unexpected error.";

/// ENVIRONMENT, FILES and EXIT STATUS for the page of `subcommand`
/// (`None`: the main page).
fn man_sections(subcommand: Option<&str>) -> Roff {
    let mut roff = Roff::new();
    roff.control("SH", ["ENVIRONMENT"]);
    entry(
        &mut roff,
        "FLARUM_WS_ROOT",
        "The forum's root, the folder holding config.php (default: the working directory). The systemd service reads it from /etc/default/flarum-ws.",
    );
    entry(
        &mut roff,
        "FLARUM_WS_CONFIG",
        "A YAML file of settings (as --config).",
    );
    for row in ROWS {
        let help = row.help.split(". ").next().unwrap_or(row.help).trim();
        entry(&mut roff, row.variable, help.trim_end_matches('.'));
    }
    entry(
        &mut roff,
        "DB_PASSWORD and other variables config.php reads",
        "A config.php that calls getenv() gets the value from flarum-ws's environment, as PHP would: set them for the service in /etc/default/flarum-ws.",
    );
    roff.text([roman(
        "Variables override the YAML file and the forum's own settings; command-line flags override both. A .env file in the working directory is read as well.",
    )]);

    roff.control("SH", ["FILES"]);
    entry(
        &mut roff,
        "config.php",
        "In the forum's root: the database the forum's settings are read from (Flarum 1 with the Kyrne extension), or the 'websocket' array (Flarum 2, flarum/realtime).",
    );
    entry(
        &mut roff,
        "/etc/default/flarum-ws",
        "The service's settings, as FLARUM_WS_* lines (the unit's EnvironmentFile).",
    );
    entry(
        &mut roff,
        "/lib/systemd/system/flarum-ws.service",
        "The systemd unit (from the tarball: /etc/systemd/system/flarum-ws.service); change it with systemctl edit flarum-ws.",
    );
    entry(
        &mut roff,
        "/usr/share/doc/flarum-ws/",
        "The README, the reference (docs/) and an example YAML file.",
    );

    roff.control("SH", ["EXIT STATUS"]);
    let codes: &[(&str, &str)] = match subcommand {
        Some("check") => &[
            ("0", "Every check passed (warnings do not count)."),
            ("1", "A check failed; its fix is printed under it."),
            (
                "2",
                "The checks could not run: a command line it cannot parse, or an unexpected error.",
            ),
        ],
        Some("serve") | None => &[
            (
                "0",
                "Stopped cleanly (SIGTERM or SIGINT): every connection was closed with code 4200.",
            ),
            (
                "1",
                "Could not start or stopped on an error, printed with its fix.",
            ),
            ("2", USAGE_OR_UNEXPECTED),
            (
                "75",
                "Stopped to be started again by systemd (the forum asked for a restart).",
            ),
        ],
        Some(_) => &[
            ("0", "Done."),
            ("1", "Failed; the error says why and what to do."),
            ("2", USAGE_OR_UNEXPECTED),
        ],
    };
    for (code, meaning) in codes {
        entry(&mut roff, code, meaning);
    }
    roff
}

/// The files each shell loads from its vendor folder: `flarum-ws.bash`,
/// `_flarum-ws` (zsh) and `flarum-ws.fish`.
fn completions(dir: &Path) -> std::io::Result<()> {
    for shell in [Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut Cli::command(), BIN, dir)?;
    }
    let mut bash = Vec::new();
    clap_complete::generate(Shell::Bash, &mut Cli::command(), BIN, &mut bash);
    let bash = String::from_utf8_lossy(&bash);
    std::fs::write(
        dir.join(format!("{BIN}.bash")),
        bash_with_subcommand_options(&bash),
    )
}

/// The binary's name, hyphen included.
const BIN: &str = "flarum-ws";

/// clap_complete's bash script (4.6.12) completes no subcommand's options
/// for a name with a hyphen: its loop names the state `flarum__ws__subcmd__check`
/// while the matching arm is spelt `flarum__subcmd__ws__subcmd__check`
/// (clap issue 6421). Spelling the arms as the loop does makes `flarum-ws
/// check --<TAB>` offer check's options; the completion test holds it.
fn bash_with_subcommand_options(script: &str) -> String {
    let arm = BIN.replace('-', "__subcmd__");
    let state = BIN.replace('-', "__");
    script.replace(&format!("{arm}__subcmd__"), &format!("{state}__subcmd__"))
}
