//! Collecting the partial settings of every source: flags (given by the CLI),
//! `FLARUM_WS_*` environment variables, a `.env` file in the working
//! directory and the YAML file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::file::load_yaml;
use super::{ConfigError, PartialSettings, VARIABLES};

/// Variables that choose sources rather than settings.
const CONFIG_VARIABLE: &str = "FLARUM_WS_CONFIG";
const ROOT_VARIABLE: &str = "FLARUM_WS_ROOT";
const META_VARIABLES: [&str; 2] = [CONFIG_VARIABLE, ROOT_VARIABLE];

/// What a forum sets, and where in the forum each value is kept (a key of
/// the settings table, an entry of config.php), for `config` and `check`.
#[derive(Debug, Default, Clone)]
pub struct ForumLayer {
    pub settings: PartialSettings,
    /// Setting name to its place in the forum, e.g. `port` to
    /// "settings table flarum_settings (key kyrne-websocket.app_port)".
    pub origins: BTreeMap<&'static str, String>,
}

/// The partial settings of every source, highest precedence first.
#[derive(Debug, Default, Clone)]
pub struct Sources {
    pub flags: PartialSettings,
    pub environment: PartialSettings,
    pub dotenv: Option<(PathBuf, PartialSettings)>,
    pub yaml: Option<(PathBuf, PartialSettings)>,
    /// The forum's settings, with where each came from.
    pub forum: Option<ForumLayer>,
    /// The forum root named by FLARUM_WS_ROOT (environment, then `.env`),
    /// and which of the two named it.
    pub root: Option<(PathBuf, String)>,
}

/// Every `FLARUM_WS_*` variable flarum-ws reads.
pub fn known_variables() -> Vec<&'static str> {
    let mut names: Vec<&str> = VARIABLES.iter().map(|(_, var)| *var).collect();
    names.extend(META_VARIABLES);
    names
}

/// Whether `name` is a `FLARUM_WS_*` variable flarum-ws reads (or one
/// that chooses a source, such as `FLARUM_WS_CONFIG`).
pub fn is_known_variable(name: &str) -> bool {
    META_VARIABLES.contains(&name) || VARIABLES.iter().any(|(_, var)| *var == name)
}

/// Of `known`, the name closest to `name` when one is close enough to be
/// what a typo meant.
pub fn nearest<'a>(name: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    known
        .into_iter()
        .map(|candidate| (strsim::levenshtein(name, candidate), candidate))
        .filter(|(distance, _)| *distance <= 3)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

/// The known variable closest to `name`, when one is close (a typo).
pub fn nearest_known_variable(name: &str) -> Option<&'static str> {
    nearest(name, known_variables())
}

/// What to say after an unknown variable's name: the known one closest to
/// it, else the whole list.
fn unknown_variable_hint(name: &str) -> String {
    match nearest_known_variable(name) {
        Some(nearest) => format!("did you mean {nearest}?"),
        None => format!("known variables: {}", known_variables().join(", ")),
    }
}

/// Keeps the `FLARUM_WS_*` variables and refuses unknown ones (a typo in a
/// variable name must not silently fall back to a default).
fn our_variables(
    vars: impl IntoIterator<Item = (String, String)>,
    origin: &str,
) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut ours = BTreeMap::new();
    for (name, value) in vars {
        if !name.starts_with("FLARUM_WS_") {
            continue;
        }
        if !is_known_variable(&name) {
            return Err(ConfigError::UnknownVariable {
                origin: origin.to_owned(),
                hint: unknown_variable_hint(&name),
                name,
            });
        }
        ours.insert(name, value);
    }
    Ok(ours)
}

fn read_dotenv(path: &Path) -> Result<BTreeMap<String, String>, ConfigError> {
    let entries = dotenvy::from_path_iter(path).map_err(|e| ConfigError::DotEnv {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    let mut vars = Vec::new();
    for entry in entries {
        vars.push(entry.map_err(|e| ConfigError::DotEnv {
            path: path.to_owned(),
            message: e.to_string(),
        })?);
    }
    our_variables(vars, &format!("{} file", path.display()))
}

/// Reads every source. `config_flag` is `--config`; `cwd` is where `.env` is
/// looked for; `environment` is the process environment.
pub fn load_sources(
    flags: PartialSettings,
    config_flag: Option<PathBuf>,
    cwd: &Path,
    environment: impl IntoIterator<Item = (String, String)>,
) -> Result<Sources, ConfigError> {
    let env_vars = our_variables(environment, "environment")?;
    let environment = PartialSettings::from_variables(&env_vars, "environment")?;

    let dotenv_path = cwd.join(".env");
    let dotenv_vars = if dotenv_path.is_file() {
        Some(read_dotenv(&dotenv_path)?)
    } else {
        None
    };
    let dotenv = match &dotenv_vars {
        Some(vars) => Some((
            dotenv_path.clone(),
            PartialSettings::from_variables(vars, &format!("{} file", dotenv_path.display()))?,
        )),
        None => None,
    };

    let root = match env_vars.get(ROOT_VARIABLE) {
        Some(root) => Some((PathBuf::from(root), ROOT_VARIABLE.to_owned())),
        None => dotenv_vars
            .as_ref()
            .and_then(|vars| vars.get(ROOT_VARIABLE))
            .map(|root| {
                (
                    PathBuf::from(root),
                    format!("{ROOT_VARIABLE} in {}", dotenv_path.display()),
                )
            }),
    };
    let config_path = config_flag
        .or_else(|| env_vars.get(CONFIG_VARIABLE).map(PathBuf::from))
        .or_else(|| {
            dotenv_vars
                .as_ref()?
                .get(CONFIG_VARIABLE)
                .map(PathBuf::from)
        });
    let yaml = match config_path {
        Some(path) => {
            let path = if path.is_relative() {
                cwd.join(path)
            } else {
                path
            };
            let partial = load_yaml(&path)?;
            Some((path, partial))
        }
        None => None,
    };

    Ok(Sources {
        flags,
        environment,
        dotenv,
        yaml,
        forum: None,
        root,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Source, resolve};

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn precedence_flag_env_dotenv_yaml_default() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ws.yaml"), "app_id: '1'\napp_key: yk\napp_secret: ys\nport: 1001\nhost: 127.0.0.1\nactivity_timeout: 45\n").unwrap();
        std::fs::write(
            dir.path().join(".env"),
            "FLARUM_WS_PORT=1002\nFLARUM_WS_APP_KEY=dk\nOTHER=x\n",
        )
        .unwrap();
        let flags = PartialSettings {
            port: Some(1004),
            ..Default::default()
        };
        let sources = load_sources(
            flags,
            Some("ws.yaml".into()),
            dir.path(),
            env(&[
                ("FLARUM_WS_PORT", "1003"),
                ("FLARUM_WS_APP_KEY", "ek"),
                ("PATH", "/bin"),
            ]),
        )
        .unwrap();
        let resolved = resolve(sources).unwrap();
        let s = &resolved.settings;
        assert_eq!(s.port, 1004);
        assert_eq!(s.app.key, "ek");
        assert_eq!(s.host, "127.0.0.1");
        assert_eq!(s.activity_timeout.as_secs(), 45);
        assert!(!s.client_events);
        assert_eq!(resolved.provenance["port"], Source::Flag);
        assert_eq!(resolved.provenance["app_key"], Source::Environment);
        assert_eq!(resolved.provenance["client_events"], Source::Default);
        assert!(matches!(resolved.provenance["host"], Source::Yaml(_)));
    }

    #[test]
    fn yaml_beats_the_forum_and_the_forum_beats_defaults() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ws.yaml"), "port: 7000\n").unwrap();
        let mut sources = load_sources(
            PartialSettings::default(),
            Some("ws.yaml".into()),
            dir.path(),
            env(&[]),
        )
        .unwrap();
        sources.forum = Some(ForumLayer {
            settings: PartialSettings {
                app_id: Some("1".into()),
                app_key: Some("k".into()),
                app_secret: Some(crate::config::Secret::new("s")),
                port: Some(2084),
                reverse_proxy: Some(true),
                ..Default::default()
            },
            origins: [(
                "app_key",
                "settings table (key kyrne-websocket.app_key)".to_owned(),
            )]
            .into(),
        });
        let resolved = resolve(sources).unwrap();
        assert_eq!(resolved.settings.port, 7000);
        assert_eq!(resolved.settings.app.key, "k");
        // Reverse-proxy mode moves the default bind address to loopback.
        assert_eq!(resolved.settings.host, "127.0.0.1");
        assert_eq!(
            resolved.provenance["app_key"].to_string(),
            "settings table (key kyrne-websocket.app_key)"
        );
        assert_eq!(resolved.provenance["host"], Source::Default);
        // The YAML's port overrides the forum's, and that is reported.
        assert_eq!(resolved.overrides.len(), 1);
        assert_eq!(resolved.overrides[0].setting, "port");
    }

    #[test]
    fn dotenv_beats_yaml() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("ws.yaml"),
            "app_id: '1'\napp_key: yk\napp_secret: ys\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join(".env"),
            "FLARUM_WS_CONFIG=ws.yaml\nFLARUM_WS_APP_KEY=dk\n",
        )
        .unwrap();
        let sources = load_sources(PartialSettings::default(), None, dir.path(), env(&[])).unwrap();
        let resolved = resolve(sources).unwrap();
        assert_eq!(resolved.settings.app.key, "dk");
        assert_eq!(resolved.settings.app.id, "1");
    }

    #[test]
    fn bad_values_and_unknown_variables_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let err = load_sources(
            PartialSettings::default(),
            None,
            dir.path(),
            env(&[("FLARUM_WS_PORT", "abc")]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("FLARUM_WS_PORT") && err.contains("abc"),
            "{err}"
        );
        let err = load_sources(
            PartialSettings::default(),
            None,
            dir.path(),
            env(&[("FLARUM_WS_PROT", "1")]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("FLARUM_WS_PROT") && err.contains("did you mean FLARUM_WS_PORT?"),
            "{err}"
        );
        let err = load_sources(
            PartialSettings::default(),
            Some("missing.yaml".into()),
            dir.path(),
            env(&[]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("missing.yaml"), "{err}");
    }

    #[test]
    fn missing_credentials_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let sources = load_sources(
            PartialSettings::default(),
            None,
            dir.path(),
            env(&[("FLARUM_WS_APP_ID", "1")]),
        )
        .unwrap();
        let err = resolve(sources).unwrap_err().to_string();
        assert!(err.contains("app_key, app_secret not set"), "{err}");
        assert!(err.contains("forum's root directory"), "{err}");
        assert!(
            err.contains("FLARUM_WS_APP_KEY") && err.contains("--config"),
            "{err}"
        );
    }
}
