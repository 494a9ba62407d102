//! The environment the service will run with. `flarum-ws serve` under
//! systemd sees the variables of its unit (`Environment=` lines and the
//! `EnvironmentFile=`s, `/etc/default/flarum-ws` in the shipped unit, drop-ins
//! from `systemctl edit` included), not those of the admin's shell; `check`
//! judges with the same, so a setting in the file is seen, a typo there is
//! caught before the service fails on it, and one in the shell only is
//! pointed out as one the service will not get.

use std::path::{Path, PathBuf};

use super::Finding;
use super::environment_file::EnvironmentFile;
use super::unit::{ServiceUnit, UNIT_DIRECTORIES, unit_files};
use crate::config::{is_known_variable, nearest_known_variable};
use crate::forum::ForumConfig;

/// What the unit gives the service.
#[derive(Debug, Default)]
pub struct UnitEnvironment {
    /// The unit file (first of `files`).
    pub unit: PathBuf,
    /// The variables, in the order systemd sets them (a later one wins),
    /// with the file each came from.
    pub vars: Vec<(String, String, PathBuf)>,
    /// `WorkingDirectory=`, if set.
    pub working_directory: Option<PathBuf>,
    /// Environment files that are named but missing or unreadable, and
    /// whether the unit marks them optional (`-`).
    pub unreadable: Vec<(PathBuf, bool, String)>,
    /// Lines of the environment files that systemd ignores, and why.
    pub ignored: Vec<(PathBuf, String)>,
}

impl UnitEnvironment {
    /// The environment `unit` gives the service, its files read by
    /// systemd's rules: `Environment=` first, then the `EnvironmentFile=`s,
    /// which override it; an empty assignment of either resets the list
    /// before it (as a drop-in does to replace the unit's file).
    pub fn read(unit: &ServiceUnit) -> Self {
        let mut env = Self {
            unit: unit.unit.clone(),
            ..Self::default()
        };
        let mut assigned = Vec::new();
        let mut files: Vec<(&str, &Path)> = Vec::new();
        for (key, value, file) in unit.settings() {
            match key {
                "Environment" if value.is_empty() => assigned.clear(),
                "Environment" => {
                    for assignment in shell_words(value) {
                        if let Some((name, value)) = assignment.split_once('=') {
                            assigned.push((name.to_owned(), value.to_owned(), file.to_owned()));
                        }
                    }
                }
                "EnvironmentFile" if value.is_empty() => files.clear(),
                "EnvironmentFile" => files.push((value, file)),
                "WorkingDirectory" => {
                    let value = value.trim_start_matches('-');
                    env.working_directory = (!value.is_empty()).then(|| PathBuf::from(value));
                }
                _ => {}
            }
        }
        env.vars = assigned;
        for (value, _) in files {
            let (optional, path) = match value.strip_prefix('-') {
                Some(path) => (true, path),
                None => (false, value),
            };
            env.read_file(Path::new(path), optional);
        }
        env
    }

    fn read_file(&mut self, path: &Path, optional: bool) {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let file = EnvironmentFile::parse(&text);
                self.vars.extend(
                    file.assignments
                        .into_iter()
                        .map(|(name, value)| (name, value, path.to_owned())),
                );
                self.ignored
                    .extend(file.ignored.into_iter().map(|why| (path.to_owned(), why)));
            }
            Err(error) => self
                .unreadable
                .push((path.to_owned(), optional, error.to_string())),
        }
    }

    /// The value the service gets for `name`, and where it is set.
    #[cfg(test)]
    fn get(&self, name: &str) -> Option<(&str, &Path)> {
        self.vars
            .iter()
            .rev()
            .find(|(var, _, _)| var == name)
            .map(|(_, value, file)| (value.as_str(), file.as_path()))
    }
}

/// What `check` judges with: the environment and working directory the
/// service will have, and what it found on the way.
pub struct Judged {
    pub environment: Vec<(String, String)>,
    pub cwd: PathBuf,
    pub findings: Vec<Finding>,
}

/// The service's environment from `unit` on top of the caller's (`shell`,
/// whose `FLARUM_WS_*` variables the service does not get), and its working
/// directory. `cwd` is where `check` runs; `root_named` says whether
/// `--root` names the forum anyway.
pub fn judge(
    unit: &UnitEnvironment,
    shell: Vec<(String, String)>,
    cwd: &Path,
    root_named: bool,
    imitated: &str,
) -> Judged {
    let mut findings = Vec::new();
    let shown = unit.unit.display();
    for (file, optional, problem) in &unit.unreadable {
        if *optional && !file.exists() {
            continue;
        }
        findings.push(Finding::fail(
            "service environment",
            format!("{}: cannot read {}: {problem}", shown, file.display()),
            format!(
                "fix {} (KEY=value lines), or remove it from the unit",
                file.display()
            ),
        ));
    }
    for (file, why) in &unit.ignored {
        findings.push(ignored_line(file, why));
    }
    for (name, _, file) in &unit.vars {
        if name.starts_with("FLARUM_WS_") && !is_known_variable(name) {
            let nearest = nearest_known_variable(name)
                .map(|known| format!("did you mean {known}? "))
                .unwrap_or_default();
            findings.push(Finding::fail(
                "service environment",
                format!("{}: unknown variable {name}: the service refuses to start with it", file.display()),
                format!("{nearest}fix the name in {} (flarum-ws config lists every setting), then systemctl restart flarum-ws", file.display()),
            ));
        }
    }
    let unit_sets = |name: &str| unit.vars.iter().any(|(var, _, _)| var == name);
    let shell_names: Vec<String> = shell.iter().map(|(name, _)| name.clone()).collect();
    let service: Vec<(String, String)> = unit
        .vars
        .iter()
        .map(|(name, value, _)| (name.clone(), value.clone()))
        .collect();
    findings.extend(check_shell_only(&shell_names, &service));
    let mut environment: Vec<(String, String)> = shell
        .into_iter()
        .filter(|(name, _)| !name.starts_with("FLARUM_WS_") && !unit_sets(name))
        .collect();
    for (name, value, _) in &unit.vars {
        environment.retain(|(var, _)| var != name);
        environment.push((name.clone(), value.clone()));
    }
    let service_cwd = unit
        .working_directory
        .clone()
        .unwrap_or_else(|| PathBuf::from("/"));
    let root_set = unit_sets("FLARUM_WS_ROOT");
    if !root_named
        && !root_set
        && cwd.join("config.php").is_file()
        && !service_cwd.join("config.php").is_file()
    {
        findings.push(Finding::fail(
            "service environment",
            format!(
                "{shown} starts flarum-ws in {} with no FLARUM_WS_ROOT: it will not find the forum in {}",
                service_cwd.display(),
                cwd.display()
            ),
            format!(
                "add FLARUM_WS_ROOT={} to /etc/default/flarum-ws, then systemctl restart flarum-ws",
                cwd.display()
            ),
        ));
    }
    let files: Vec<String> = {
        let mut files: Vec<String> = unit
            .vars
            .iter()
            .map(|(_, _, file)| file.display().to_string())
            .collect();
        files.dedup();
        files
    };
    findings.insert(
        0,
        Finding::pass(
            "service environment",
            format!(
                "judged as {shown} runs flarum-ws, from its files read by flarum-ws's imitation of systemd's rules ({imitated}): in {}, with the environment of {}",
                service_cwd.display(),
                if files.is_empty() {
                    "the unit (no variables)".to_owned()
                } else {
                    files.join(", ")
                }
            ),
        ),
    );
    // What the service would see, where `check` reads files from: the
    // working directory only matters when no root is named.
    let cwd = if root_named || root_set {
        cwd.to_owned()
    } else {
        service_cwd
    };
    Judged {
        environment,
        cwd,
        findings,
    }
}

/// The environment and working directory flarum-ws.service gives its
/// process, read from the installed unit's files (the fallback where
/// systemd cannot run the command as the service): `None` when no unit is
/// installed.
pub fn service_environment(shell: Vec<(String, String)>, cwd: &Path) -> Option<ServiceEnvironment> {
    let unit = ServiceUnit::read(&unit_files(&UNIT_DIRECTORIES, "flarum-ws.service"))?;
    let judged = judge(&UnitEnvironment::read(&unit), shell, cwd, false, "");
    Some(ServiceEnvironment {
        environment: judged.environment,
        cwd: judged.cwd,
        unit: unit.unit,
    })
}

/// What [`service_environment`] found.
pub struct ServiceEnvironment {
    pub environment: Vec<(String, String)>,
    pub cwd: PathBuf,
    /// The unit file, named to the admin.
    pub unit: PathBuf,
}

/// A line of an environment file that systemd skips.
pub fn ignored_line(file: &Path, why: &str) -> Finding {
    Finding::fail(
        "service environment",
        format!("{}: {why}; the service does not get it", file.display()),
        format!(
            "write the line as NAME=value in {} (systemd's rules: no export, # comments on their own line), then systemctl restart flarum-ws",
            file.display()
        ),
    )
}

/// The `FLARUM_WS_*` variables of the admin's shell (`shell`, names) that
/// the service's environment (`service`) lacks: the service will not get
/// them, whatever `check` run from that shell would otherwise say.
pub fn check_shell_only(shell: &[String], service: &[(String, String)]) -> Option<Finding> {
    let shell_only: Vec<&str> = shell
        .iter()
        .map(String::as_str)
        .filter(|name| {
            name.starts_with("FLARUM_WS_") && !service.iter().any(|(var, _)| var == name)
        })
        .collect();
    if shell_only.is_empty() {
        return None;
    }
    let (it, them) = if shell_only.len() == 1 {
        ("it", "it")
    } else {
        ("them", "them")
    };
    Some(Finding::warn(
        "service environment",
        format!(
            "{} set in this shell only: flarum-ws.service does not get {it} (judged without {them})",
            shell_only.join(", "),
        ),
        "put them in /etc/default/flarum-ws (NAME=value lines), then systemctl restart flarum-ws",
    ))
}

/// Variables config.php reads (`getenv`, `$_SERVER`) that the service does
/// not have but the admin's shell does: PHP run from that shell works, the
/// service does not.
pub fn check_config_variables(shell: &[String], config: &ForumConfig) -> Vec<Finding> {
    config
        .unset_variables
        .iter()
        .filter(|unset| shell.contains(&unset.name))
        .map(|unset| {
            Finding::fail(
                "service environment",
                format!(
                    "{} line {} reads {}, which is set in the shell you ran check from but not for flarum-ws.service",
                    config.path.display(),
                    unset.line,
                    unset.name
                ),
                format!(
                    "put {}=… in /etc/default/flarum-ws (or another EnvironmentFile= of the unit), then systemctl restart flarum-ws",
                    unset.name
                ),
            )
        })
        .collect()
}

/// `Environment=` values: space-separated, each maybe in double quotes.
fn shell_words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    for c in text.chars() {
        match c {
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_unit_its_file_and_drop_ins_give_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let defaults = dir.path().join("default");
        std::fs::write(
            &defaults,
            "# the forum\nFLARUM_WS_ROOT=/var/www/flarum\nDB_PASSWORD=\"s3cret pass\"\n",
        )
        .unwrap();
        let unit = dir.path().join("flarum-ws.service");
        std::fs::write(
            &unit,
            format!(
                "[Unit]\nEnvironment=IGNORED=1\n[Service]\nEnvironment=\"FLARUM_WS_VERBOSE=true\" OTHER=x\nEnvironmentFile=-{}\nEnvironmentFile=-/nonexistent/file\nUser=www-data\n",
                defaults.display()
            ),
        )
        .unwrap();
        let drop_in = dir.path().join("override.conf");
        std::fs::write(
            &drop_in,
            "[Service]\nEnvironment=FLARUM_WS_VERBOSE=false\nWorkingDirectory=/srv\n",
        )
        .unwrap();
        let service = ServiceUnit::read(&[unit.clone(), drop_in.clone()]).unwrap();
        let env = UnitEnvironment::read(&service);
        assert_eq!(env.get("FLARUM_WS_ROOT").unwrap().0, "/var/www/flarum");
        assert_eq!(env.get("DB_PASSWORD").unwrap().0, "s3cret pass");
        assert_eq!(
            env.get("FLARUM_WS_VERBOSE"),
            Some(("false", drop_in.as_path()))
        );
        assert_eq!(env.get("IGNORED"), None, "only [Service] counts");
        assert_eq!(env.working_directory.as_deref(), Some(Path::new("/srv")));
        assert_eq!(env.unreadable.len(), 1);
        assert!(env.unreadable[0].1, "a `-` file is optional");
    }
}
