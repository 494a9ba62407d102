//! Signed-in users (`pusher:signin`): which sockets belong to which user, who
//! watches whom, and terminating a user's connections.
//!
//! A user is online while at least one of their sockets is signed in; their
//! watchers hear `online` when the first socket signs in and `offline` when the
//! last one goes.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::mpsc::UnboundedSender;

use super::link::SocketLink;
use super::mailbox::Frame;
use super::notice::Notice;
use crate::protocol::messages::{SigninUser, outgoing};
use crate::protocol::{SocketId, close_code};

type Sockets = HashMap<SocketId, Arc<SocketLink>>;

#[derive(Debug, Default)]
pub(super) struct Users {
    sockets_by_user: HashMap<String, Sockets>,
    signed_in: HashMap<SocketId, SigninUser>,
    /// Watched user id → the sockets watching them.
    watchers: HashMap<String, Sockets>,
    /// In a cluster: signed-in sockets per user on other nodes.
    remote: HashMap<String, usize>,
}

impl Users {
    /// Whether `user_id` has a signed-in socket on any node.
    fn is_online(&self, user_id: &str) -> bool {
        self.sockets_by_user.contains_key(user_id) || self.remote.contains_key(user_id)
    }

    fn notify_watchers(&self, user_id: &str, online: bool) {
        let Some(watchers) = self.watchers.get(user_id) else {
            return;
        };
        let ids = [user_id];
        let frame = Frame::from(if online {
            outgoing::watchlist_events(&ids, &[])
        } else {
            outgoing::watchlist_events(&[], &ids)
        });
        for link in watchers.values() {
            link.send_shared(frame.clone(), watchers.len());
        }
    }

    /// Forgets the signin of `socket`, telling watchers if the user went offline.
    pub(super) fn sign_out(&mut self, socket: SocketId, notices: Option<&UnboundedSender<Notice>>) {
        let Some(user) = self.signed_in.remove(&socket) else {
            return;
        };
        if let Some(notices) = notices {
            let _ = notices.send(Notice::SignedOut {
                socket,
                user_id: user.id.clone(),
            });
        }
        for watched in &user.watchlist {
            if let Some(watchers) = self.watchers.get_mut(watched) {
                watchers.remove(&socket);
                if watchers.is_empty() {
                    self.watchers.remove(watched);
                }
            }
        }
        if let Some(sockets) = self.sockets_by_user.get_mut(&user.id) {
            sockets.remove(&socket);
            if sockets.is_empty() {
                self.sockets_by_user.remove(&user.id);
                if !self.is_online(&user.id) {
                    self.notify_watchers(&user.id, false);
                }
            }
        }
    }

    /// Records that `link` is signed in as `user`, tells the user's watchers
    /// if they just came online, and sends `link` the state of its watchlist.
    pub(super) fn sign_in(
        &mut self,
        link: &Arc<SocketLink>,
        user: SigninUser,
        notices: Option<&UnboundedSender<Notice>>,
    ) {
        self.sign_out(link.id, notices);
        if let Some(notices) = notices {
            let _ = notices.send(Notice::SignedIn {
                socket: link.id,
                user_id: user.id.clone(),
            });
        }

        let was_online = self.is_online(&user.id);
        let sockets = self.sockets_by_user.entry(user.id.clone()).or_default();
        sockets.insert(link.id, link.clone());
        if !was_online {
            self.notify_watchers(&user.id, true);
        }
        for watched in &user.watchlist {
            self.watchers
                .entry(watched.clone())
                .or_default()
                .insert(link.id, link.clone());
        }
        if !user.watchlist.is_empty() {
            let (online, offline): (Vec<&str>, Vec<&str>) = user
                .watchlist
                .iter()
                .map(String::as_str)
                .partition(|id| self.is_online(id));
            link.send(outgoing::watchlist_events(&online, &offline).into());
        }
        self.signed_in.insert(link.id, user);
    }

    /// A socket on another node signed in as `user_id`.
    pub(super) fn remote_sign_in(&mut self, user_id: &str) {
        let was_online = self.is_online(user_id);
        *self.remote.entry(user_id.to_owned()).or_default() += 1;
        if !was_online {
            self.notify_watchers(user_id, true);
        }
    }

    /// A socket on another node signed out of `user_id`.
    pub(super) fn remote_sign_out(&mut self, user_id: &str) {
        let Some(count) = self.remote.get_mut(user_id) else {
            return;
        };
        *count -= 1;
        if *count == 0 {
            self.remote.remove(user_id);
            if !self.is_online(user_id) {
                self.notify_watchers(user_id, false);
            }
        }
    }

    /// This node's signed-in sockets and their users.
    pub(super) fn local_signins(&self) -> Vec<(SocketId, String)> {
        self.signed_in
            .iter()
            .map(|(socket, user)| (*socket, user.id.clone()))
            .collect()
    }

    /// The user `socket` is signed in as.
    pub(super) fn signed_in_user(&self, socket: SocketId) -> Option<String> {
        self.signed_in.get(&socket).map(|u| u.id.clone())
    }

    /// Closes every socket signed in as `user_id` (4009); returns how many.
    pub(super) fn terminate_user(&self, user_id: &str) -> usize {
        let Some(sockets) = self.sockets_by_user.get(user_id) else {
            return 0;
        };
        for link in sockets.values() {
            link.request_close(close_code::UNAUTHORIZED);
        }
        sockets.len()
    }
}
