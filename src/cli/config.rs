//! `flarum-ws config`: every effective setting and the source that decided
//! it, so an admin can see why the server does what it does.

use std::io::Write;

use super::load::{load_as_the_service, run_as_the_service, runtime};
use super::{Exit, Failure, SourceArgs};

/// Values longer than this get a line of their own.
const MAX_VALUE_COLUMN: usize = 40;

pub fn run(args: SourceArgs) -> Result<Exit, Failure> {
    if let Some(exit) = run_as_the_service("config", &args) {
        return Ok(exit);
    }
    let loaded = runtime()?.block_on(load_as_the_service(&args))?;
    let resolved = &loaded.resolved;
    let mut out = std::io::stdout().lock();
    let mut print = |line: String| {
        // A closed pipe (`flarum-ws config | head`) is not an error.
        let _ = writeln!(out, "{line}");
    };
    match &loaded.forum {
        Some(forum) => {
            print(format!("# forum: {}", forum.config.path.display()));
            print(format!("# serving: {}", forum.settings.extension.name()));
        }
        None => print("# no forum (no config.php in the working directory)".into()),
    }
    let rows: Vec<(&str, String, String)> = resolved
        .effective
        .describe()
        .into_iter()
        .map(|(name, value)| {
            let source = resolved
                .provenance
                .get(name)
                .map_or_else(|| "not set".to_owned(), ToString::to_string);
            (name, value.unwrap_or_else(|| "-".into()), source)
        })
        .collect();
    // Columns as wide as the names and the values need, up to a limit past
    // which the source moves to its own line instead of breaking the table.
    let name_width = rows.iter().map(|(n, _, _)| n.len()).max().unwrap_or(0);
    let value_width = rows
        .iter()
        .map(|(_, v, _)| v.chars().count())
        .filter(|len| *len <= MAX_VALUE_COLUMN)
        .max()
        .unwrap_or(0);
    for (name, value, source) in rows {
        if value.chars().count() > value_width {
            print(format!("{name:<name_width$}  {value}"));
            print(format!(
                "{:<name_width$}  {:<value_width$}  {source}",
                "", ""
            ));
        } else {
            print(format!(
                "{name:<name_width$}  {value:<value_width$}  {source}"
            ));
        }
    }
    let tls = match &resolved.settings.tls {
        Some(files) => format!("on ({})", files.cert.display()),
        None if resolved.settings.reverse_proxy => "off (reverse proxy terminates TLS)".into(),
        None => "off (no certificate set)".into(),
    };
    print(format!("# TLS: {tls}"));
    for o in &resolved.overrides {
        print(format!(
            "# note: {} from {} overrides the forum's {}",
            o.setting,
            o.by.place_of(o.setting),
            o.forum_place
        ));
    }
    Ok(Exit::Success)
}
