//! What flarum/realtime's extras ask of the forum's database: who a user
//! is, their groups and permissions, and a discussion's state and tags.
//! Each answer is read as text cells, the one shape every driver returns
//! alike.

use std::collections::HashMap;

use sqlx::{AssertSqlSafe, Row};

use super::{Database, QueryError};
use crate::forum::config_php::Driver;

/// What typing indicators need of a user.
#[derive(Debug, Clone)]
pub struct UserRow {
    pub display_name: String,
    pub preferences: Option<Vec<u8>>,
}

/// A discussion as far as visibility goes.
#[derive(Debug, Clone)]
pub struct DiscussionFacts {
    pub hidden: bool,
    pub private: bool,
    pub approved: bool,
    /// The discussion's tags and their parents: (id, restricted).
    pub tags: Vec<(u64, bool)>,
    /// The discussion's own tags (not their parents).
    pub own_tags: Vec<u64>,
}

impl Database {
    /// `expression` as text, in this database's dialect (integers of any
    /// width and sign read back the same way everywhere).
    fn as_text(&self, expression: &str) -> String {
        match self.driver {
            Driver::MySql | Driver::MariaDb => format!("CAST({expression} AS CHAR)"),
            Driver::Postgres | Driver::Sqlite => format!("CAST({expression} AS TEXT)"),
        }
    }

    /// A condition as '1' or '0'.
    fn flag(condition: &str) -> String {
        format!("CASE WHEN {condition} THEN '1' ELSE '0' END")
    }

    /// Runs `sql` with integer `binds` and returns every row as text cells.
    async fn text_rows(
        &self,
        sql: String,
        binds: &[i64],
    ) -> Result<Vec<Vec<Option<String>>>, QueryError> {
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for bind in binds {
            query = query.bind(*bind);
        }
        let rows = query
            .fetch_all(&self.pool)
            .await
            .map_err(self.failed("query"))?;
        rows.iter()
            .map(|row| {
                (0..row.len())
                    .map(|i| row.try_get::<Option<String>, _>(i).map_err(self.decode()))
                    .collect()
            })
            .collect()
    }

    /// The integer `column` of the rows of `table` whose `key` is `value`.
    async fn ids(
        &self,
        column: &str,
        table: &str,
        key: &str,
        value: i64,
    ) -> Result<Vec<u64>, QueryError> {
        let table = self.quote(&self.table(table));
        let sql = format!(
            "SELECT {} FROM {table} WHERE {key} = {}",
            self.as_text(column),
            self.placeholder(1)
        );
        Ok(self
            .text_rows(sql, &[value])
            .await?
            .into_iter()
            .filter_map(|row| row.first().cloned().flatten()?.parse().ok())
            .collect())
    }

    /// Whether user `id` confirmed their email, and their groups.
    pub async fn user_groups(&self, id: u64) -> Result<(bool, Vec<u64>), QueryError> {
        let id = i64::try_from(id).map_err(|_| QueryError::OutOfRange { what: "user", id })?;
        let users = self.quote(&self.table("users"));
        let confirmed = self
            .text_rows(
                format!(
                    "SELECT {} FROM {users} WHERE id = {}",
                    Self::flag("is_email_confirmed"),
                    self.placeholder(1)
                ),
                &[id],
            )
            .await?;
        let confirmed = confirmed
            .first()
            .and_then(|row| row.first().cloned().flatten())
            .is_some_and(|v| v == "1");
        let groups = self.ids("group_id", "group_user", "user_id", id).await?;
        Ok((confirmed, groups))
    }

    /// Whether one of `groups` holds `permission`.
    pub async fn groups_have_permission(
        &self,
        groups: &[u64],
        permission: &str,
    ) -> Result<bool, QueryError> {
        let table = self.quote(&self.table("group_permission"));
        let list: Vec<String> = groups.iter().map(u64::to_string).collect();
        if list.is_empty() {
            return Ok(false);
        }
        // The group ids are numbers read from the database; the permission
        // is bound.
        let sql = format!(
            "SELECT {} FROM {table} WHERE permission = {} AND group_id IN ({})",
            self.as_text("COUNT(*)"),
            self.placeholder(1),
            list.join(", ")
        );
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(permission.to_owned())
            .fetch_one(&self.pool)
            .await
            .map_err(self.failed("read permissions from"))?;
        let count: Option<String> = row.try_get(0).map_err(self.decode())?;
        Ok(count.is_some_and(|c| c != "0"))
    }

    /// A discussion's visibility facts: hidden, private, approved (when
    /// `approval`), and its tags with their parents (when `tags`).
    pub async fn discussion_facts(
        &self,
        id: u64,
        approval: bool,
        tags: bool,
    ) -> Result<Option<DiscussionFacts>, QueryError> {
        let id = i64::try_from(id).map_err(|_| QueryError::OutOfRange {
            what: "discussion",
            id,
        })?;
        let discussions = self.quote(&self.table("discussions"));
        let approved = if approval {
            Self::flag("is_approved")
        } else {
            "'1'".to_owned()
        };
        let rows = self
            .text_rows(
                format!(
                    "SELECT {}, {}, {approved} FROM {discussions} WHERE id = {}",
                    Self::flag("hidden_at IS NOT NULL"),
                    Self::flag("is_private"),
                    self.placeholder(1)
                ),
                &[id],
            )
            .await?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let yes = |i: usize| row.get(i).cloned().flatten().is_some_and(|v| v == "1");
        let (hidden, private, approved) = (yes(0), yes(1), yes(2));
        let mut own_tags = Vec::new();
        if tags {
            own_tags = self
                .ids("tag_id", "discussion_tag", "discussion_id", id)
                .await?;
        }
        let chains = self
            .tags_with_parents(&own_tags.iter().copied().collect())
            .await?;
        let mut all: Vec<(u64, bool)> = chains.values().flatten().copied().collect();
        all.sort_unstable();
        all.dedup();
        if own_tags.iter().any(|t| !chains.contains_key(t)) {
            // A tag row that cannot be read proves nothing: treat as restricted.
            all.push((u64::MAX, true));
        }
        Ok(Some(DiscussionFacts {
            hidden,
            private,
            approved,
            tags: all,
            own_tags,
        }))
    }

    /// Each tag of `ids` with its parent chain: id to [(id, restricted),
    /// (parent, restricted)...].
    pub async fn tags_with_parents(
        &self,
        ids: &std::collections::BTreeSet<u64>,
    ) -> Result<HashMap<u64, Vec<(u64, bool)>>, QueryError> {
        let mut known: HashMap<u64, (bool, Option<u64>)> = HashMap::new();
        let mut wanted: Vec<u64> = ids.iter().copied().collect();
        let tags = self.quote(&self.table("tags"));
        // Tags nest two levels in Flarum; a few rounds cover any chain.
        for _ in 0..4 {
            wanted.retain(|id| !known.contains_key(id));
            if wanted.is_empty() {
                break;
            }
            let list: Vec<String> = wanted.iter().map(u64::to_string).collect();
            let rows = self
                .text_rows(
                    format!(
                        "SELECT {}, {}, {} FROM {tags} WHERE id IN ({})",
                        self.as_text("id"),
                        Self::flag("is_restricted"),
                        self.as_text("parent_id"),
                        list.join(", ")
                    ),
                    &[],
                )
                .await?;
            let mut parents = Vec::new();
            for row in rows {
                let cell = |i: usize| row.get(i).cloned().flatten();
                let Some(id) = cell(0).and_then(|v| v.parse().ok()) else {
                    continue;
                };
                let parent = cell(2).and_then(|v| v.parse::<u64>().ok());
                parents.extend(parent);
                known.insert(id, (cell(1).is_some_and(|v| v == "1"), parent));
            }
            wanted = parents;
        }
        let mut chains = HashMap::new();
        for id in ids {
            let mut chain = Vec::new();
            let mut next = Some(*id);
            while let Some(current) = next.take() {
                let Some((restricted, parent)) = known.get(&current) else {
                    // A parent that cannot be read: unprovable.
                    chain.push((current, true));
                    break;
                };
                chain.push((current, *restricted));
                next = parent.filter(|p| !chain.iter().any(|(c, _)| c == p));
            }
            if known.contains_key(id) {
                chains.insert(*id, chain);
            }
        }
        Ok(chains)
    }

    /// A user's display name (the username, or the nickname when
    /// `nickname` is set and the user has one) and raw preferences.
    pub async fn user_identity(
        &self,
        id: u64,
        nickname: bool,
    ) -> Result<Option<UserRow>, QueryError> {
        let users = self.quote(&self.table("users"));
        let nickname_column = if nickname { ", nickname" } else { "" };
        let sql = format!(
            "SELECT username, preferences{nickname_column} FROM {users} WHERE id = {}",
            self.placeholder(1)
        );
        let id = i64::try_from(id).map_err(|_| QueryError::OutOfRange { what: "user", id })?;
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(self.failed("read the users table of"))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let username: String = row.try_get(0).map_err(self.decode())?;
        let preferences: Option<Vec<u8>> = row
            .try_get::<Option<Vec<u8>>, _>(1)
            .or_else(|_| {
                row.try_get::<Option<String>, _>(1)
                    .map(|s| s.map(String::into_bytes))
            })
            .map_err(self.decode())?;
        let nickname: Option<String> = if nickname {
            row.try_get::<Option<String>, _>(2).map_err(self.decode())?
        } else {
            None
        };
        Ok(Some(UserRow {
            display_name: nickname
                .filter(|n| !n.trim().is_empty())
                .unwrap_or(username),
            preferences,
        }))
    }
}
