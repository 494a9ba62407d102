//! The `flarum-ws` binary: parse the command line, run, map the outcome to
//! an exit code. Errors are printed once, here, with their whole cause chain.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = flarum_ws::cli::Cli::parse();
    match flarum_ws::cli::run(cli) {
        Ok(code) => code.into(),
        Err(failure) => {
            // Not eprintln!: with stderr gone it would panic and change
            // the exit code.
            let _ = writeln!(std::io::stderr(), "error: {:#}", failure.error);
            failure.exit.into()
        }
    }
}
