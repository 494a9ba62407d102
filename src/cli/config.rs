//! `flarum-ws config`: every effective setting and the source that decided
//! it, so an admin can see why the server does what it does.

use std::io::Write;

use super::load::{load, runtime};
use super::{Exit, Failure, SourceArgs};

pub fn run(args: SourceArgs) -> Result<Exit, Failure> {
    let loaded = runtime()?.block_on(load(&args))?;
    let resolved = &loaded.resolved;
    let mut out = std::io::stdout().lock();
    let mut print = |line: String| {
        // A closed pipe (`flarum-ws config | head`) is not an error.
        let _ = writeln!(out, "{line}");
    };
    match &loaded.forum {
        Some(forum) => print(format!("# forum: {}", forum.config.path.display())),
        None => print("# no forum (no config.php in the working directory)".into()),
    }
    for (name, value) in resolved.effective.describe() {
        let source = resolved
            .provenance
            .get(name)
            .map_or_else(|| "not set".to_owned(), ToString::to_string);
        let value = value.unwrap_or_else(|| "-".into());
        print(format!("{name:<30} {value:<40} {source}"));
    }
    let tls = match &resolved.settings.tls {
        Some(files) => format!("on ({})", files.cert.display()),
        None if resolved.settings.reverse_proxy => "off (reverse proxy terminates TLS)".into(),
        None => "off (no certificate set)".into(),
    };
    print(format!("# TLS: {tls}"));
    Ok(Exit::Success)
}
