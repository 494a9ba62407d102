//! The environment the service will run with. `flarum-ws serve` under
//! systemd sees the variables of its unit (`Environment=` lines and the
//! `EnvironmentFile=`s, `/etc/default/flarum-ws` in the shipped unit, drop-ins
//! from `systemctl edit` included), not those of the admin's shell; `check`
//! judges with the same, so a setting in the file is seen, a typo there is
//! caught before the service fails on it, and one in the shell only is
//! pointed out as one the service will not get.

use std::path::{Path, PathBuf};

use super::Finding;
use super::unit::ServiceUnit;
use crate::config::{is_known_variable, nearest_known_variable};

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
}

impl UnitEnvironment {
    /// The environment `unit` gives the service, its files read as
    /// systemd reads them.
    pub fn read(unit: &ServiceUnit) -> Self {
        let mut env = Self {
            unit: unit.unit.clone(),
            ..Self::default()
        };
        for (key, value, file) in unit.settings() {
            match key {
                "Environment" => {
                    for assignment in shell_words(value) {
                        if let Some((name, value)) = assignment.split_once('=') {
                            env.vars
                                .push((name.to_owned(), value.to_owned(), file.to_owned()));
                        }
                    }
                }
                "EnvironmentFile" => {
                    let (optional, path) = match value.strip_prefix('-') {
                        Some(path) => (true, path),
                        None => (false, value),
                    };
                    env.read_file(Path::new(path), optional);
                }
                "WorkingDirectory" => {
                    let value = value.trim_start_matches('-');
                    env.working_directory = (!value.is_empty()).then(|| PathBuf::from(value));
                }
                _ => {}
            }
        }
        env
    }

    fn read_file(&mut self, path: &Path, optional: bool) {
        match dotenvy::from_path_iter(path) {
            Ok(entries) => {
                for entry in entries {
                    match entry {
                        Ok((name, value)) => self.vars.push((name, value, path.to_owned())),
                        Err(error) => {
                            self.unreadable
                                .push((path.to_owned(), optional, error.to_string()));
                            return;
                        }
                    }
                }
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
    let shell_only: Vec<&str> = shell
        .iter()
        .map(|(name, _)| name.as_str())
        .filter(|name| name.starts_with("FLARUM_WS_") && !unit_sets(name))
        .collect();
    if !shell_only.is_empty() {
        findings.push(Finding::warn(
            "service environment",
            format!(
                "{} set in this shell only: flarum-ws.service does not get {} (judged without {})",
                shell_only.join(", "),
                if shell_only.len() == 1 { "it" } else { "them" },
                if shell_only.len() == 1 { "it" } else { "them" },
            ),
            "put them in /etc/default/flarum-ws (NAME=value lines), then systemctl restart flarum-ws".to_owned(),
        ));
    }
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
                "judged as {shown} runs flarum-ws: in {}, with the environment of {}",
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
