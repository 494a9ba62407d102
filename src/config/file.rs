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
    use crate::config::PartialSettings;

    #[test]
    fn the_shipped_example_and_demo_configs_parse() {
        let example_text = include_str!("../../contrib/flarum-ws.example.yaml");
        let example = parse_yaml(example_text).unwrap();
        assert_eq!(
            example,
            PartialSettings::default(),
            "the example sets nothing"
        );
        // Each commented-out value, once uncommented, is valid.
        let uncommented: String = example_text
            .lines()
            .map(|line| match line.strip_prefix("# ") {
                Some(rest)
                    if rest.split_once(": ").is_some_and(|(key, _)| {
                        key.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                    }) =>
                {
                    rest
                }
                _ => line,
            })
            .collect::<Vec<_>>()
            .join("\n");
        let all = parse_yaml(&uncommented).unwrap();
        assert_eq!(all.port, Some(2083));
        assert_eq!(all.max_cached_channels, Some(10_000));
        let demo = parse_yaml(include_str!("../../contrib/flarum-ws.demo.yaml")).unwrap();
        assert_eq!(demo.app_key.as_deref(), Some("demo-key"));
    }
}
