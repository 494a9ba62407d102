//! Presence members of one channel: a user counts once however many sockets
//! (tabs) they have in the channel, so `member_added` fires on their first
//! socket and `member_removed` on their last.
//!
//! Everyone who subscribes gets the whole member list, so a crowd joining
//! one channel costs n lists of up to n members. Each member's part of the
//! list is serialized once, when they join, and the list itself once per
//! change of membership; subscribers in between share it.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

use crate::protocol::messages::PresenceMember;

/// One user in a presence channel.
#[derive(Debug)]
pub(super) struct Member {
    /// The id as the forum sent it (number or string), echoed back unchanged.
    pub user_id: Value,
    pub user_info: Value,
    /// How many of the channel's sockets belong to this user.
    pub sockets: usize,
    /// `user_id` and `"key":user_info` as JSON, for the member list.
    id_json: String,
    entry_json: String,
}

/// The members of a presence channel, keyed by the id's string form.
#[derive(Debug, Default)]
pub(super) struct Members {
    by_key: HashMap<String, Member>,
    /// The `subscription_succeeded` data (the member list) since the last
    /// change of membership.
    list: Option<Arc<str>>,
}

/// What joining or leaving did to the member list.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Change {
    /// The user's first socket joined (or last socket left).
    Membership,
    /// Another socket of a user already present joined or left.
    SocketOnly,
}

impl Members {
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    pub fn contains(&self, key: &str) -> bool {
        self.by_key.contains_key(key)
    }

    pub fn get(&self, key: &str) -> Option<&Member> {
        self.by_key.get(key)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Member> {
        self.by_key.values()
    }

    /// Adds a socket of `member`; the first socket's user_info is kept.
    pub fn join(&mut self, member: PresenceMember) -> Change {
        match self.by_key.get_mut(&member.key) {
            Some(existing) => {
                existing.sockets += 1;
                Change::SocketOnly
            }
            None => {
                self.list = None;
                let id_json = member.user_id.to_string();
                let entry_json =
                    format!("{}:{}", Value::from(member.key.as_str()), member.user_info);
                self.by_key.insert(
                    member.key,
                    Member {
                        user_id: member.user_id,
                        user_info: member.user_info,
                        sockets: 1,
                        id_json,
                        entry_json,
                    },
                );
                Change::Membership
            }
        }
    }

    /// The presence data of `subscription_succeeded`
    /// (`{"presence":{"ids":[...],"hash":{...},"count":n}}`), built once per
    /// change of membership.
    pub fn list(&mut self) -> Arc<str> {
        if let Some(list) = &self.list {
            return list.clone();
        }
        let mut ids = String::new();
        let mut hash = String::new();
        for (i, member) in self.by_key.values().enumerate() {
            if i > 0 {
                ids.push(',');
                hash.push(',');
            }
            ids.push_str(&member.id_json);
            hash.push_str(&member.entry_json);
        }
        let list: Arc<str> = format!(
            r#"{{"presence":{{"ids":[{ids}],"hash":{{{hash}}},"count":{}}}}}"#,
            self.by_key.len()
        )
        .into();
        self.list = Some(list.clone());
        list
    }

    /// Removes one socket of the user `key`; returns the member when it was
    /// their last.
    pub fn leave(&mut self, key: &str) -> Option<Member> {
        let member = self.by_key.get_mut(key)?;
        member.sockets = member.sockets.saturating_sub(1);
        if member.sockets == 0 {
            self.list = None;
            self.by_key.remove(key)
        } else {
            None
        }
    }
}
