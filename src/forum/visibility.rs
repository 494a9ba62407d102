//! Who may see a discussion, proven from the database or not at all.
//!
//! flarum/realtime asks PHP (`Discussion::whereVisibleTo($actor)`), which any
//! extension can extend; flarum-ws cannot run those scopes, so it proves
//! visibility only under rules it knows completely and answers "no" to
//! everything else (nobody is told about what is not proven):
//!
//! - every enabled extension is one of [`KNOWN_EXTENSIONS`], whose effect on
//!   discussion visibility is the core and tags rules below, or none;
//! - the discussion exists, is not hidden (`hidden_at`), not private
//!   (`is_private`), and approved (`is_approved`, with flarum-approval);
//! - the actor's groups grant `viewForum` (guests: the Guest group; users:
//!   Guest, and Member plus their groups once their email is confirmed;
//!   Admins hold every permission);
//! - with flarum-tags, every tag of the discussion and every parent of those
//!   is either unrestricted or restricted with `tag{id}.viewForum` granted
//!   to one of the actor's groups (Flarum hides a discussion when any of its
//!   tags is hidden from the actor).
//!
//! Answers are cached for 30 seconds, as the daemon caches its routing.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::database::{Database, DiscussionFacts, QueryError};

/// Extensions whose effect on who sees a discussion is known: none, or the
/// approval and tags rules checked here. Any other enabled extension may
/// add a visibility scope, and then nothing is proven.
pub const KNOWN_EXTENSIONS: [&str; 21] = [
    "flarum-akismet",
    "flarum-approval",
    "flarum-bbcode",
    "flarum-emoji",
    "flarum-extension-manager",
    "flarum-flags",
    "flarum-gdpr",
    "flarum-lang-english",
    "flarum-likes",
    "flarum-lock",
    "flarum-markdown",
    "flarum-mentions",
    "flarum-messages",
    "flarum-nicknames",
    "flarum-pusher",
    "flarum-realtime",
    "flarum-statistics",
    "flarum-sticky",
    "flarum-subscriptions",
    "flarum-suspend",
    "flarum-tags",
];

const GUEST_GROUP: u64 = 2;
const MEMBER_GROUP: u64 = 3;
const ADMIN_GROUP: u64 = 1;
/// How long a looked-up answer is reused.
const CACHE_TTL: Duration = Duration::from_secs(30);
const PRUNE_AT: usize = 2000;

/// Who is asking: a guest, or a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Actor {
    Guest,
    User(u64),
}

type Cached<T> = Mutex<HashMap<T, (Instant, bool)>>;

/// Proves visibility from the forum database; see the module's rules.
pub struct Visibility {
    database: Database,
    /// Every enabled extension is known: otherwise nothing is proven.
    provable: bool,
    approval: bool,
    tags: bool,
    discussions: Cached<(Actor, u64)>,
    permissions: Cached<(Actor, String)>,
    /// Whether an actor sees a tag (and its parents): typing signals name
    /// tags over and over, and each answer costs a query.
    tags_seen: Cached<(Actor, u64)>,
}

impl Visibility {
    /// For a forum whose `extensions_enabled` (a JSON list) is `enabled`.
    pub fn new(database: Database, enabled: &[String]) -> Self {
        let unknown: Vec<&String> = enabled
            .iter()
            .filter(|e| !KNOWN_EXTENSIONS.contains(&e.as_str()))
            .collect();
        if !unknown.is_empty() {
            tracing::info!(
                "Index typing and typing activity are off: {} may decide who sees a discussion, which flarum-ws cannot check",
                unknown
                    .iter()
                    .map(|e| e.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        Self {
            database,
            provable: unknown.is_empty(),
            approval: enabled.iter().any(|e| e == "flarum-approval"),
            tags: enabled.iter().any(|e| e == "flarum-tags"),
            discussions: Mutex::new(HashMap::new()),
            permissions: Mutex::new(HashMap::new()),
            tags_seen: Mutex::new(HashMap::new()),
        }
    }

    /// Whether anything can be proven on this forum.
    pub fn provable(&self) -> bool {
        self.provable
    }

    fn cached<T: std::hash::Hash + Eq + Clone>(cache: &Cached<T>, key: &T) -> Option<bool> {
        let cache = cache.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .get(key)
            .filter(|(at, _)| at.elapsed() < CACHE_TTL)
            .map(|(_, answer)| *answer)
    }

    fn remember<T: std::hash::Hash + Eq>(cache: &Cached<T>, key: T, answer: bool) {
        let mut cache = cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= PRUNE_AT {
            cache.retain(|_, (at, _)| at.elapsed() < CACHE_TTL);
        }
        cache.insert(key, (Instant::now(), answer));
    }

    /// The actor's groups, as Flarum counts them for permissions.
    async fn groups(&self, actor: Actor) -> Result<Vec<u64>, QueryError> {
        match actor {
            Actor::Guest => Ok(vec![GUEST_GROUP]),
            Actor::User(id) => {
                let (confirmed, mut groups) = self.database.user_groups(id).await?;
                if !confirmed {
                    return Ok(vec![GUEST_GROUP]);
                }
                groups.extend([GUEST_GROUP, MEMBER_GROUP]);
                Ok(groups)
            }
        }
    }

    /// Whether `actor` holds `permission` (Admins hold all).
    pub async fn has_permission(&self, actor: Actor, permission: &str) -> bool {
        let key = (actor, permission.to_owned());
        if let Some(answer) = Self::cached(&self.permissions, &key) {
            return answer;
        }
        let answer = match self.groups(actor).await {
            Ok(groups) if groups.contains(&ADMIN_GROUP) => true,
            Ok(groups) => self
                .database
                .groups_have_permission(&groups, permission)
                .await
                .unwrap_or(false),
            Err(problem) => {
                tracing::debug!("cannot read the groups of {actor:?}: {problem}");
                false
            }
        };
        Self::remember(&self.permissions, key, answer);
        answer
    }

    async fn facts(&self, discussion: u64) -> Option<DiscussionFacts> {
        match self
            .database
            .discussion_facts(discussion, self.approval, self.tags)
            .await
        {
            Ok(facts) => facts,
            Err(problem) => {
                tracing::debug!("cannot read discussion {discussion}: {problem}");
                None
            }
        }
    }

    /// Whether `actor` can see the tag `(id, restricted)`.
    async fn sees_tag(&self, actor: Actor, (id, restricted): (u64, bool)) -> bool {
        !restricted
            || self
                .has_permission(actor, &format!("tag{id}.viewForum"))
                .await
    }

    /// Whether `actor` provably sees `discussion`.
    pub async fn can_see(&self, actor: Actor, discussion: u64) -> bool {
        if !self.provable {
            return false;
        }
        if let Some(answer) = Self::cached(&self.discussions, &(actor, discussion)) {
            return answer;
        }
        let answer = match self.facts(discussion).await {
            Some(facts) if !facts.hidden && !facts.private && facts.approved => {
                let mut visible = self.has_permission(actor, "viewForum").await;
                for tag in &facts.tags {
                    if !visible {
                        break;
                    }
                    visible = self.sees_tag(actor, *tag).await;
                }
                visible
            }
            _ => false,
        };
        Self::remember(&self.discussions, (actor, discussion), answer);
        answer
    }

    /// The discussion's facts when its own state (not the actor) allows it
    /// to be shown at all; for routing by tag.
    pub async fn shown_discussion(&self, discussion: u64) -> Option<DiscussionFacts> {
        if !self.provable {
            return None;
        }
        self.facts(discussion)
            .await
            .filter(|f| !f.hidden && !f.private && f.approved)
    }

    /// Of `claimed` tag ids, those `actor` provably sees (with their
    /// parents), in ascending order.
    pub async fn visible_tags(&self, actor: Actor, claimed: &[u64]) -> Vec<u64> {
        if !self.provable || !self.tags || !self.has_permission(actor, "viewForum").await {
            return Vec::new();
        }
        let claimed: BTreeSet<u64> = claimed.iter().copied().collect();
        let mut visible = Vec::new();
        let mut unknown = BTreeSet::new();
        for id in claimed {
            match Self::cached(&self.tags_seen, &(actor, id)) {
                Some(true) => visible.push(id),
                Some(false) => {}
                None => {
                    unknown.insert(id);
                }
            }
        }
        if unknown.is_empty() {
            return visible;
        }
        let Ok(tags) = self.database.tags_with_parents(&unknown).await else {
            return Vec::new();
        };
        for id in unknown {
            // An unknown tag is not seen (and remembered so, for a while).
            let mut sees = tags.contains_key(&id);
            for tag in tags.get(&id).into_iter().flatten() {
                if !self.sees_tag(actor, *tag).await {
                    sees = false;
                    break;
                }
            }
            Self::remember(&self.tags_seen, (actor, id), sees);
            if sees {
                visible.push(id);
            }
        }
        visible.sort_unstable();
        visible
    }
}
