//! The installed flarum-ws.service as systemd reads it: the unit file and
//! its drop-ins (from `systemctl edit`), in the order systemd applies them,
//! and their `[Service]` settings. Read once; each check that judges "as
//! the service will run" (its environment, its user, its capabilities, its
//! sandbox) asks it instead of parsing the files again.

use std::path::{Path, PathBuf};

/// Where systemd looks for units, most local first.
pub const UNIT_DIRECTORIES: [&str; 5] = [
    "/etc/systemd/system",
    "/run/systemd/system",
    "/usr/local/lib/systemd/system",
    "/usr/lib/systemd/system",
    "/lib/systemd/system",
];

/// The unit file systemd would load under `directories`, and its drop-ins
/// in the order systemd applies them.
pub fn unit_files(directories: &[&str], name: &str) -> Vec<PathBuf> {
    let Some(unit) = directories
        .iter()
        .map(|dir| Path::new(dir).join(name))
        .find(|path| path.is_file())
    else {
        return Vec::new();
    };
    let mut drop_ins: Vec<PathBuf> = directories
        .iter()
        .filter_map(|dir| std::fs::read_dir(Path::new(dir).join(format!("{name}.d"))).ok())
        .flatten()
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|e| e == "conf"))
        .collect();
    drop_ins.sort_by_key(|path| path.file_name().map(ToOwned::to_owned));
    let mut files = vec![unit];
    files.extend(drop_ins);
    files
}

/// A unit's `[Service]` settings, each with the file that set it.
#[derive(Debug, Default)]
pub struct ServiceUnit {
    /// The unit file (the drop-ins follow it in `settings`' files).
    pub unit: PathBuf,
    settings: Vec<(String, String, PathBuf)>,
}

impl ServiceUnit {
    /// Reads `files` (a unit and its drop-ins); `None` when there is none.
    pub fn read(files: &[PathBuf]) -> Option<Self> {
        let mut unit = Self {
            unit: files.first()?.clone(),
            settings: Vec::new(),
        };
        for file in files {
            let Ok(text) = std::fs::read_to_string(file) else {
                continue;
            };
            let mut in_service = false;
            for line in text.lines().map(str::trim) {
                if line.starts_with('[') {
                    in_service = line == "[Service]";
                } else if in_service
                    && !line.starts_with(['#', ';'])
                    && let Some((key, value)) = line.split_once('=')
                {
                    unit.settings.push((
                        key.trim().to_owned(),
                        value.trim().to_owned(),
                        file.clone(),
                    ));
                }
            }
        }
        Some(unit)
    }

    /// Every setting, in the order systemd applies them: key, value, file.
    pub fn settings(&self) -> impl Iterator<Item = (&str, &str, &Path)> {
        self.settings
            .iter()
            .map(|(key, value, file)| (key.as_str(), value.as_str(), file.as_path()))
    }

    /// Every value of `key`, in the order systemd applies them, with the
    /// file each is in.
    pub fn values<'a>(&'a self, key: &str) -> impl Iterator<Item = (&'a str, &'a Path)> {
        let key = key.to_owned();
        self.settings
            .iter()
            .filter(move |(k, _, _)| *k == key)
            .map(|(_, value, file)| (value.as_str(), file.as_path()))
    }

    /// The value of `key` that wins (the last), and its file.
    pub fn last(&self, key: &str) -> Option<(&str, &Path)> {
        self.values(key).last()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_ins_follow_the_unit_and_the_last_value_wins() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("system");
        std::fs::create_dir_all(dir.join("flarum-ws.service.d")).unwrap();
        std::fs::write(
            dir.join("flarum-ws.service"),
            "[Unit]\nUser=nobody\n[Service]\n# User=commented\nUser=www-data\nPrivateTmp=yes\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("flarum-ws.service.d/override.conf"),
            "[Service]\nUser=flarum\n",
        )
        .unwrap();
        let dirs = [dir.to_str().unwrap()];
        let unit = ServiceUnit::read(&unit_files(&dirs, "flarum-ws.service")).unwrap();
        let (user, from) = unit.last("User").unwrap();
        assert_eq!(user, "flarum");
        assert!(from.ends_with("override.conf"));
        assert_eq!(unit.values("User").count(), 2);
        assert_eq!(unit.last("PrivateTmp").unwrap().0, "yes");
        assert!(ServiceUnit::read(&[]).is_none());
    }
}
