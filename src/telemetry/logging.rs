//! Logs on stderr: readable lines by default, one JSON object per line with
//! `log_format: json` for log shippers. `RUST_LOG` overrides the level;
//! otherwise flarum-ws logs at info, which with `--verbose` includes every
//! connection, subscription and message, as the PHP server's console did.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

pub fn init(verbose: bool, format: LogFormat) {
    let default = if verbose {
        "flarum_ws=debug,info"
    } else {
        "flarum_ws=info,warn"
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
    };
}
