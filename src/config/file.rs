//! The YAML configuration file: the same names as the variables, in
//! snake_case. A file the admin named must load; unknown keys and unparsable
//! values are errors with the file, key and line.

use std::path::Path;

use super::{ConfigError, PartialSettings};

/// Reads and parses the YAML file at `path`.
pub fn load_yaml(path: &Path) -> Result<PartialSettings, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
        path: path.to_owned(),
        source,
    })?;
    parse_yaml(&text).map_err(|message| ConfigError::InvalidYaml {
        path: path.to_owned(),
        message,
    })
}

/// Parses YAML text; an empty file (or one holding only comments) is valid.
pub fn parse_yaml(text: &str) -> Result<PartialSettings, String> {
    let has_content = text
        .lines()
        .any(|line| !line.trim().is_empty() && !line.trim_start().starts_with('#'));
    if !has_content {
        return Ok(PartialSettings::default());
    }
    serde_yaml::from_str(text).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_known_keys() {
        let parsed = parse_yaml("app_id: '1'\nport: 6001\nclient_events: true\n").unwrap();
        assert_eq!(parsed.app_id.as_deref(), Some("1"));
        assert_eq!(parsed.port, Some(6001));
        assert_eq!(parsed.client_events, Some(true));
        assert_eq!(
            parse_yaml("# nothing\n\n").unwrap(),
            PartialSettings::default()
        );
    }

    #[test]
    fn errors_name_key_and_line() {
        let unknown = parse_yaml("app_id: '1'\nprot: 6001\n").unwrap_err();
        assert!(
            unknown.contains("prot") && unknown.contains("line 2"),
            "{unknown}"
        );
        let bad = parse_yaml("app_id: '1'\n\nport: lots\n").unwrap_err();
        assert!(bad.contains("port") && bad.contains("line 3"), "{bad}");
    }
}

#[cfg(test)]
mod shipped_files {
    use super::parse_yaml;

    #[test]
    fn the_shipped_example_and_demo_configs_parse() {
        let example = parse_yaml(include_str!("../../contrib/flarum-ws.example.yaml")).unwrap();
        assert_eq!(example.port, Some(2083));
        let demo = parse_yaml(include_str!("../../contrib/flarum-ws.demo.yaml")).unwrap();
        assert_eq!(demo.app_key.as_deref(), Some("demo-key"));
    }
}
