//! What a reload serves: the freshly read settings, but for the rows marked
//! `=> restart` in `fields.rs` (what is bound, opened or started once),
//! which keep the value the process started with. Held back at the source,
//! before defaults: a default that follows from a held setting (the bind
//! address and trusted proxies from `reverse_proxy`) follows the value
//! that serves, not the one that waits.

use super::fields::into_settings;
use super::{ConfigError, PartialSettings, ROWS, Resolved};

/// A changed setting that waits for a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub key: &'static str,
    /// The value read now, as text (secrets redacted).
    pub now: String,
    /// Where the value read now comes from (`` `verbose:` in /etc/flarum-ws.yaml ``,
    /// `FLARUM_WS_PORT in the environment`, the forum's settings key).
    pub from: String,
    /// The value that keeps serving.
    pub still: String,
}

/// `fresh` as a reload applies it while `serving` runs: every restart
/// row as `serving` has it, each one that changed listed.
pub fn hold_restart_settings(
    fresh: Resolved,
    serving: &Resolved,
) -> Result<(Resolved, Vec<Held>), ConfigError> {
    let mut given = fresh.given.clone();
    let mut provenance = fresh.given_provenance.clone();
    let mut held = Vec::new();
    for row in ROWS.iter().filter(|row| row.restart) {
        if fresh.effective.differs(&serving.effective, row.key) {
            held.push(Held {
                key: row.key,
                now: shown(&fresh.effective, row.key),
                from: fresh.provenance.get(row.key).map_or_else(
                    || "the default".to_owned(),
                    |source| source.place_of(row.key),
                ),
                still: shown(&serving.effective, row.key),
            });
        }
        given.keep(&serving.given, row.key);
        match serving.given_provenance.get(row.key) {
            Some(source) => provenance.insert(row.key, source.clone()),
            None => provenance.remove(row.key),
        };
    }
    let mut applied = into_settings(given, provenance, fresh.from_forum)?;
    applied.overrides = fresh.overrides;
    Ok((applied, held))
}

/// `key`'s value in `settings` as text, `unset` when it has none.
fn shown(settings: &PartialSettings, key: &str) -> String {
    settings
        .describe()
        .into_iter()
        .find(|(name, _)| *name == key)
        .and_then(|(_, value)| value)
        .unwrap_or_else(|| "unset".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Source, Sources, resolve};

    fn resolved(yaml: &str) -> Resolved {
        let settings = crate::config::file::parse_yaml(yaml).unwrap();
        resolve(Sources {
            yaml: Some(("/etc/flarum-ws.yaml".into(), settings)),
            ..Sources::default()
        })
        .unwrap()
    }

    const CREDENTIALS: &str = "app_id: '1'\napp_key: k\napp_secret: s\n";

    /// Turning `reverse_proxy` on waits for a restart, and so do the
    /// defaults it brings (bind to loopback, trust the local proxy).
    #[test]
    fn a_held_setting_keeps_the_defaults_that_follow_from_it() {
        let serving = resolved(CREDENTIALS);
        let fresh = resolved(&format!(
            "{CREDENTIALS}reverse_proxy: true\nverbose: true\n"
        ));
        let (applied, held) = hold_restart_settings(fresh, &serving).unwrap();
        assert!(!applied.settings.reverse_proxy);
        assert!(!applied.settings.verbose);
        assert_eq!(applied.settings.host, "0.0.0.0");
        assert!(applied.settings.trusted_proxies.is_empty());
        assert_eq!(
            held.iter().map(|h| h.key).collect::<Vec<_>>(),
            ["host", "verbose", "reverse_proxy"]
        );
        assert_eq!(held[1].from, "`verbose:` in /etc/flarum-ws.yaml");
        assert_eq!(applied.provenance.get("verbose"), Some(&Source::Default));
    }

    /// What needs no restart is applied at once.
    #[test]
    fn a_setting_that_needs_no_restart_is_applied() {
        let serving = resolved(CREDENTIALS);
        let fresh = resolved(&format!("{CREDENTIALS}max_event_data_bytes: 2048\n"));
        let (applied, held) = hold_restart_settings(fresh, &serving).unwrap();
        assert_eq!(applied.settings.limits.max_event_data_bytes, 2048);
        assert!(held.is_empty());
    }
}
