//! The admin's `check` handing its judging to systemd: asks for the
//! service's view, runs the judging process in a transient unit with it
//! (`as_service`), and adds what only the admin's side can see: the lines
//! of the environment files systemd skipped, and a forum root the
//! service's sandbox hides although the admin's shell sees it.

use std::path::{Path, PathBuf};

use super::Finding;
use super::Status;
use super::as_service::{
    Context, Failed, Judge, NotAsked, ServiceView, judged_by_systemd, service_view,
};
use super::environment_file::EnvironmentFile;
use super::nginx_config;
use super::sandbox::hidden_from_service;
use super::setup::CheckInput;
use super::unit_env::ignored_line;

/// The lines of the service's environment files that systemd skipped: it
/// judged without them, and says why only in its journal. Read by
/// flarum-ws's imitation of systemd's rules, to point at the line.
fn ignored_lines(view: &ServiceView) -> Vec<Finding> {
    view.environment_files
        .iter()
        .map(|file| Path::new(file.trim_start_matches('-')))
        .filter_map(|path| Some((path, std::fs::read_to_string(path).ok()?)))
        .flat_map(|(path, text)| {
            EnvironmentFile::parse(&text)
                .ignored
                .into_iter()
                .map(move |why| ignored_line(path, &why))
        })
        .collect()
}

/// Asks systemd to run the judging part as flarum-ws.service runs, when it
/// can: `Ok` with what it found, or `Err` with why the unit files are read
/// instead (`None`: no service to judge as).
pub(super) fn judge_by_systemd(
    input: &CheckInput,
    findings: &mut Vec<Finding>,
) -> Result<Option<PathBuf>, Option<String>> {
    let view = match service_view() {
        Ok(view) => view,
        Err(NotAsked::NoService) => return Err(None),
        Err(NotAsked::Imitated(why)) => return Err(Some(why)),
    };
    let mut check_args = Vec::new();
    if let Some(live) = &input.live {
        check_args.push("--live".to_owned());
        if let Some(via) = &live.via {
            check_args.extend(["--via".to_owned(), via.clone()]);
        }
        if let Some(proxy) = &live.proxy {
            check_args.extend(["--proxy".to_owned(), proxy.clone()]);
        }
        if let Some(idle) = live.idle {
            check_args.push(format!("--idle={}", idle.as_secs()));
        }
    }
    for file in &input.nginx_conf {
        check_args.push(format!("--nginx-conf={}", file.display()));
    }
    let judge = Judge {
        view: &view,
        check_args,
        source_args: input.source_args.clone(),
        context: Context {
            shell: input
                .environment
                .iter()
                .map(|(name, _)| name.clone())
                .collect(),
            nginx: if input.nginx_conf.is_empty() {
                nginx_config::dump(input.nginx_main.as_deref()).transpose()
            } else {
                None
            },
        },
    };
    match judge.run() {
        Ok(mut report) => {
            findings.push(judged_by_systemd(&view));
            findings.extend(ignored_lines(&view));
            // Seen from here, but not by the service: its sandbox hides it.
            if let Some(root) = report
                .root
                .as_deref()
                .filter(|root| root.join("config.php").is_file())
            {
                for finding in &mut report.checks {
                    if finding.check == "config.php"
                        && finding.status == Status::Fail
                        && finding.message.starts_with("no config.php")
                    {
                        *finding = hidden_from_service(root, &view.properties);
                    }
                }
            }
            findings.extend(report.checks);
            Ok(report.root)
        }
        Err(Failed::Broken(finding)) => {
            findings.push(finding);
            Ok(None)
        }
        Err(Failed::CannotAsk(why)) => Err(Some(why)),
    }
}
