//! Logs on stderr: readable lines by default, one JSON object per line with
//! `log_format: json` for log shippers. `RUST_LOG` overrides the level;
//! otherwise flarum-ws logs at info, which with `--verbose` includes every
//! connection, subscription and message, as the PHP server's console did.

use std::io::{IsTerminal, Write};

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Starts logging to stderr: text or JSON lines, per-message lines when
/// `verbose`.
pub fn init(verbose: bool, format: LogFormat) {
    let default = if verbose {
        "flarum_ws=debug,info"
    } else {
        "flarum_ws=info,warn"
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| QuietStderr)
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

/// stderr that never reports a failure. When nobody reads the log any more
/// (`serve | head`, a closed ssh terminal, a supervisor's pipe gone), a line
/// is dropped; reporting the failure would make tracing print it to the same
/// broken stderr, which panics the task that logged: a session before its
/// cleanup, or the signal handler before it stops the server.
struct QuietStderr;

impl Write for QuietStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = std::io::stderr().write_all(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = std::io::stderr().flush();
        Ok(())
    }
}
