//! Human-readable logs on stderr. `RUST_LOG` overrides the level; otherwise
//! flarum-ws logs at info, which with `--verbose` includes every connection,
//! subscription and message, as the PHP server's console did.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

pub fn init(verbose: bool) {
    let default = if verbose {
        "flarum_ws=debug,info"
    } else {
        "flarum_ws=info,warn"
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}
