//! What other nodes of a cluster tell the hub (their members and signins),
//! and what this node tells them of its own.

use super::Hub;
use crate::hub::mailbox::Frame;
use crate::hub::notice::ChannelChange;
use crate::hub::presence::Change;
use crate::protocol::messages::{PresenceMember, outgoing};
use crate::protocol::{ChannelName, SocketId};

impl Hub {
    /// A socket on another node signed in as `user_id`.
    pub fn remote_sign_in(&self, user_id: &str) {
        self.write().users.remote_sign_in(user_id);
    }

    /// A socket on another node signed out of `user_id`.
    pub fn remote_sign_out(&self, user_id: &str) {
        self.write().users.remote_sign_out(user_id);
    }

    /// This node's signed-in sockets and their users.
    pub fn local_signins(&self) -> Vec<(SocketId, String)> {
        self.read().users.local_signins()
    }

    /// A member joined `channel` on another node: counted like a local
    /// socket, so `member_added` fires only for the user's first socket in
    /// the whole cluster. Presence limits do not apply (the other node
    /// already admitted it).
    pub fn remote_join(&self, channel: &ChannelName, member: PresenceMember) {
        let mut state = self.write();
        let user_id = state.changes.is_some().then(|| member.user_id.clone());
        let entry = state.channels.entry(channel.clone()).or_default();
        let added = outgoing::member_added(channel.as_str(), &member.user_id, &member.user_info);
        if entry.members.join(member) == Change::Membership {
            let frame = Frame::from(added);
            let sharers = entry.subscribers.len();
            for subscriber in entry.subscribers.values() {
                subscriber.link.send_shared(frame.clone(), sharers);
            }
            if let Some(user_id) = user_id {
                state.tell(|| ChannelChange::Member {
                    channel: channel.to_string(),
                    user_id,
                    joined: true,
                });
            }
        }
    }

    /// A member's socket on another node left `channel`.
    pub fn remote_leave(&self, channel: &str, key: &str) {
        Self::leave_member(&mut self.write(), channel, key);
    }

    /// One membership of `key` in `channel` ends; the member is removed
    /// (and `member_removed` sent) when it was their last.
    pub(super) fn leave_member(state: &mut super::State, channel: &str, key: &str) {
        let Some(entry) = state.channels.get_mut(channel) else {
            return;
        };
        let left = entry.members.leave(key);
        if let Some(member) = &left {
            entry.announce_removed(channel, &member.user_id);
        }
        if entry.is_unused() {
            state.channels.remove(channel);
        }
        if let Some(member) = left {
            state.tell(|| ChannelChange::Member {
                channel: channel.to_owned(),
                user_id: member.user_id,
                joined: false,
            });
        }
    }

    /// This node's own presence memberships: (channel, socket, member).
    pub fn local_members(&self) -> Vec<(String, SocketId, PresenceMember)> {
        let state = self.read();
        let mut list = Vec::new();
        for (name, channel) in &state.channels {
            for (socket, subscriber) in &channel.subscribers {
                let Some(key) = &subscriber.member_key else {
                    continue;
                };
                if let Some(member) = channel.members.get(key) {
                    list.push((
                        name.to_string(),
                        *socket,
                        PresenceMember {
                            user_id: member.user_id.clone(),
                            key: key.clone(),
                            user_info: member.user_info.clone(),
                        },
                    ));
                }
            }
        }
        list
    }
}
