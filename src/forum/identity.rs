//! Who a typing user is, as Flarum shows them: the display name (the
//! username, or the nickname with the `nickname` display-name driver) and
//! whether they disclose their online status (the `discloseOnline`
//! preference, on unless turned off). Read from the users table and kept
//! for five seconds, as flarum/realtime does: long enough to spare the
//! database a query per keystroke, short enough that hiding one's status
//! takes effect at once.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::database::Database;

/// How long a looked-up identity is reused.
const TTL: Duration = Duration::from_secs(5);
/// Above this many cached users, expired ones are dropped first.
const PRUNE_AT: usize = 500;

/// A user as typing indicators name them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub display_name: String,
    pub disclose_online: bool,
}

/// Looks identities up in the forum database, with a short cache.
pub struct Identities {
    database: Database,
    nickname: bool,
    cache: Mutex<HashMap<u64, (Option<Identity>, Instant)>>,
}

impl Identities {
    /// `display_name_driver` is the forum's setting of that name.
    pub fn new(database: Database, display_name_driver: Option<&str>) -> Self {
        Self {
            database,
            nickname: display_name_driver == Some("nickname"),
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The identity of user `id`; `None` when there is no such user or the
    /// database cannot say (callers then name nobody).
    pub async fn of(&self, id: u64) -> Option<Identity> {
        let now = Instant::now();
        if let Some((identity, at)) = self.lock().get(&id)
            && now.duration_since(*at) < TTL
        {
            return identity.clone();
        }
        let identity = match self.database.user_identity(id, self.nickname).await {
            Ok(found) => found.map(|row| Identity {
                display_name: bounded_name(row.display_name),
                disclose_online: disclose_online(row.preferences.as_deref()),
            }),
            Err(problem) => {
                tracing::warn!("Typing: cannot read user {id} from the forum database: {problem}");
                return None;
            }
        };
        let mut cache = self.lock();
        if cache.len() >= PRUNE_AT {
            cache.retain(|_, (_, at)| now.duration_since(*at) < TTL);
        }
        cache.insert(id, (identity.clone(), now));
        identity
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, (Option<Identity>, Instant)>> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Characters of a display name sent with a typing signal: Flarum's own
/// columns hold 255, and a longer one (an extension's driver, an edited
/// database) must not turn every keystroke into a frame that large.
const MAX_DISPLAY_NAME_CHARS: usize = 255;

fn bounded_name(name: String) -> String {
    match name.char_indices().nth(MAX_DISPLAY_NAME_CHARS) {
        Some((cut, _)) => name[..cut].to_owned(),
        None => name,
    }
}

/// Flarum's `discloseOnline` preference from the preferences JSON: on when
/// unset (the preference's registered default), off only when false.
fn disclose_online(preferences: Option<&[u8]>) -> bool {
    let Some(bytes) = preferences.filter(|b| !b.is_empty()) else {
        return true;
    };
    match serde_json::from_slice::<serde_json::Value>(bytes) {
        Ok(value) => match value.get("discloseOnline") {
            Some(serde_json::Value::Bool(b)) => *b,
            Some(serde_json::Value::Number(n)) => n.as_f64() != Some(0.0),
            Some(serde_json::Value::Null) | None => true,
            Some(_) => true,
        },
        // Unreadable preferences: name nobody who might have hidden.
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::disclose_online;

    #[test]
    fn the_preference_is_on_unless_turned_off() {
        assert!(disclose_online(None));
        assert!(disclose_online(Some(b"{}")));
        assert!(disclose_online(Some(br#"{"discloseOnline":true}"#)));
        assert!(!disclose_online(Some(br#"{"discloseOnline":false}"#)));
        assert!(!disclose_online(Some(br#"{"discloseOnline":0}"#)));
        assert!(!disclose_online(Some(b"not json")));
    }
}
