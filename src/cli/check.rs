//! `flarum-ws check`: prints every finding (✓ pass, ! warning, ✗ failure
//! with its fix) or JSON; exits 0 when nothing failed, 1 when something
//! did, 2 when the checks could not run.

use std::io::Write;

use anyhow::Context;

use super::load::runtime;
use super::{CheckArgs, Exit, Failure};
use crate::check::{CheckInput, Judging, LiveOptions, Status, read_context, run_checks};

pub fn run(args: CheckArgs) -> Result<Exit, Failure> {
    let cwd = std::env::current_dir()
        .context("cannot read the working directory")
        .map_err(Failure::unexpected)?;
    let sources = &args.sources;
    let input = CheckInput {
        flags: sources.flags(),
        config: sources.config.clone(),
        root: sources.root.clone(),
        cwd,
        environment: std::env::vars().collect(),
        live: (args.live || args.via.is_some() || args.idle.is_some()).then(|| LiveOptions {
            via: args.via.clone(),
            proxy: args.proxy.clone(),
            idle: args.idle.map(std::time::Duration::from_secs),
        }),
        nginx_conf: args.nginx_conf.clone(),
        nginx_main: args.nginx_main.clone(),
        unit: args.unit.clone(),
        user: args.user.clone(),
        source_args: sources.to_args(),
        judging: if sources.as_service {
            Judging::AsService(read_context())
        } else {
            Judging::Admin
        },
    };
    let outcome = runtime()?.block_on(run_checks(input));
    let findings = &outcome.findings;
    let failed = findings.iter().any(|f| f.status == Status::Fail);
    let mut out = std::io::stdout().lock();
    if args.json {
        let report = serde_json::json!({ "ok": !failed, "checks": findings, "root": outcome.root });
        let _ = writeln!(out, "{report}");
    } else {
        for finding in findings {
            let _ = writeln!(
                out,
                "{} {}: {}",
                finding.status.symbol(),
                finding.check,
                finding.message
            );
            if let (Some(fix), true) = (&finding.fix, finding.status != Status::Pass) {
                let _ = writeln!(out, "    fix: {fix}");
            }
        }
        let summary = if failed {
            "Something needs fixing (see ✗ above)."
        } else {
            "All good."
        };
        let _ = writeln!(out, "{summary}");
    }
    Ok(if failed { Exit::Failure } else { Exit::Success })
}
