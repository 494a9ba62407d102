//! Flarum 2's config.php `websocket` array: keys flarum/realtime reads, and
//! the ones it does not (a typo the forum silently ignores).

use super::Finding;
use crate::forum::ForumConfig;

/// Keys of config.php's `websocket` array that flarum/realtime does not
/// read: a typo there changes nothing, silently.
pub(super) fn check_websocket_keys(config: &ForumConfig) -> Vec<Finding> {
    crate::forum::unknown_websocket_keys(&config.websocket)
        .into_iter()
        .map(|(key, nearest)| {
            let instead = match nearest {
                Some(known) => format!("did you mean '{known}'? rename it"),
                None => format!(
                    "remove it; the keys read are {}",
                    crate::forum::WEBSOCKET_KEYS.join(", ")
                ),
            };
            Finding::warn(
                "config.php",
                format!(
                    "{}: 'websocket' => ['{key}' => …] is not a setting flarum/realtime (or flarum-ws) reads, so it changes nothing",
                    config.path.display()
                ),
                format!("{instead} in config.php's 'websocket' array"),
            )
        })
        .collect()
}
