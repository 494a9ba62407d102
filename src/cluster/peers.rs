//! What this node knows of the other nodes: their presence members and
//! signed-in users (mirrored into the hub so presence and watchlists are
//! cluster-wide) and when each was last heard from. A node silent for
//! longer than the expiry while this node's own link works is forgotten:
//! its members leave (with `member_removed` where they were the user's
//! last socket) and its signed-in users go offline. While this node's own
//! link is down, silence proves nothing and nobody is forgotten.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::bus::MemberEntry;
use super::sequence::{Arrival, Sequence};
use crate::hub::Hub;
use crate::protocol::ChannelName;
use crate::protocol::messages::PresenceMember;

#[derive(Debug)]
struct Peer {
    last_seen: Instant,
    /// (channel, socket) → member.
    members: HashMap<(String, String), MemberEntry>,
    /// socket → user id.
    signins: HashMap<String, String>,
    /// Its numbered events seen here, from the first one heard.
    events: Option<Sequence>,
}

impl Peer {
    fn new() -> Self {
        Self {
            last_seen: Instant::now(),
            members: HashMap::new(),
            signins: HashMap::new(),
            events: None,
        }
    }
}

#[derive(Debug, Default)]
pub struct Peers {
    by_node: HashMap<String, Peer>,
}

fn apply_join(hub: &Hub, entry: &MemberEntry) {
    let Ok(channel) = ChannelName::parse(&entry.channel, usize::MAX) else {
        return;
    };
    hub.remote_join(
        &channel,
        PresenceMember {
            user_id: entry.user_id.clone(),
            key: entry.key.clone(),
            user_info: entry.user_info.clone(),
        },
    );
}

impl Peers {
    /// Marks `node` alive; returns true when it was unknown.
    pub fn seen(&mut self, node: &str) -> bool {
        match self.by_node.get_mut(node) {
            Some(peer) => {
                peer.last_seen = Instant::now();
                false
            }
            None => {
                self.by_node.insert(node.to_owned(), Peer::new());
                true
            }
        }
    }

    pub fn count(&self) -> usize {
        self.by_node.len()
    }

    /// Event `seq` of `node` arrived (`replay`: published again for a node
    /// that missed it): whether to deliver it. The first event heard from
    /// a node starts its sequence, unless it is a replay, which is older
    /// than this node's acquaintance with it and not delivered.
    pub fn arrive(&mut self, node: &str, seq: u64, replay: bool, now: Instant) -> Arrival {
        let peer = self
            .by_node
            .entry(node.to_owned())
            .or_insert_with(Peer::new);
        match &mut peer.events {
            Some(sequence) => sequence.arrive(seq, now),
            None if replay => Arrival::Duplicate,
            None => {
                peer.events = Some(Sequence::starting_at(seq));
                Arrival::New
            }
        }
    }

    /// Where `node`'s replay for this node must start, if any of its
    /// events were heard.
    pub fn lowest_missing(&self, node: &str) -> Option<u64> {
        let events = self.by_node.get(node)?.events.as_ref()?;
        Some(events.lowest_missing())
    }

    /// [`Self::lowest_missing`] of every node.
    pub fn all_lowest_missing(&self) -> Vec<(String, u64)> {
        self.by_node
            .keys()
            .filter_map(|node| Some((node.clone(), self.lowest_missing(node)?)))
            .collect()
    }

    /// Gives up on events missing for longer than `window`; returns how
    /// many were newly given up on.
    pub fn give_up_missing(&mut self, window: Duration, now: Instant) -> u64 {
        self.by_node
            .values_mut()
            .filter_map(|peer| peer.events.as_mut())
            .map(|events| events.give_up_older_than(window, now))
            .sum()
    }

    /// This node's link is back: every node gets a full expiry from now to
    /// be heard again before it is forgotten.
    pub fn touch_all(&mut self) {
        let now = Instant::now();
        for peer in self.by_node.values_mut() {
            peer.last_seen = now;
        }
    }

    /// The ids of the nodes heard from lately.
    pub fn nodes(&self) -> impl Iterator<Item = &str> {
        self.by_node.keys().map(String::as_str)
    }

    pub fn joined(&mut self, hub: &Hub, node: &str, entry: MemberEntry) {
        let peer = self
            .by_node
            .entry(node.to_owned())
            .or_insert_with(Peer::new);
        let id = (entry.channel.clone(), entry.socket.clone());
        if let std::collections::hash_map::Entry::Vacant(slot) = peer.members.entry(id) {
            apply_join(hub, &entry);
            slot.insert(entry);
        }
    }

    pub fn left(&mut self, hub: &Hub, node: &str, channel: &str, socket: &str) {
        let Some(peer) = self.by_node.get_mut(node) else {
            return;
        };
        if let Some(entry) = peer
            .members
            .remove(&(channel.to_owned(), socket.to_owned()))
        {
            hub.remote_leave(channel, &entry.key);
        }
    }

    pub fn signed_in(&mut self, hub: &Hub, node: &str, socket: String, user_id: String) {
        let peer = self
            .by_node
            .entry(node.to_owned())
            .or_insert_with(Peer::new);
        if let Some(previous) = peer.signins.insert(socket, user_id.clone()) {
            hub.remote_sign_out(&previous);
        }
        hub.remote_sign_in(&user_id);
    }

    pub fn signed_out(&mut self, hub: &Hub, node: &str, socket: &str) {
        let Some(peer) = self.by_node.get_mut(node) else {
            return;
        };
        if let Some(user_id) = peer.signins.remove(socket) {
            hub.remote_sign_out(&user_id);
        }
    }

    /// Replaces what is known of `node` with its snapshot, changing only
    /// what differs (so users present before and after do not flicker).
    pub fn snapshot(
        &mut self,
        hub: &Hub,
        node: &str,
        members: Vec<MemberEntry>,
        signins: Vec<(String, String)>,
    ) {
        let peer = self
            .by_node
            .entry(node.to_owned())
            .or_insert_with(Peer::new);
        let fresh: HashMap<(String, String), MemberEntry> = members
            .into_iter()
            .map(|entry| ((entry.channel.clone(), entry.socket.clone()), entry))
            .collect();
        // Joins first, so a user moving between sockets never drops to zero.
        for (id, entry) in &fresh {
            if !peer.members.contains_key(id) {
                apply_join(hub, entry);
            }
        }
        for (id, entry) in &peer.members {
            if !fresh.contains_key(id) {
                hub.remote_leave(&id.0, &entry.key);
            }
        }
        peer.members = fresh;

        let fresh: HashMap<String, String> = signins.into_iter().collect();
        for (socket, user) in &fresh {
            if peer.signins.get(socket) != Some(user) {
                hub.remote_sign_in(user);
            }
        }
        for (socket, user) in &peer.signins {
            if fresh.get(socket) != Some(user) {
                hub.remote_sign_out(user);
            }
        }
        peer.signins = fresh;
    }

    /// Forgets nodes not heard from within `expiry`, if this node's own
    /// link works (`link_works`); returns their ids and how many members
    /// each had.
    pub fn expire(
        &mut self,
        hub: &Hub,
        expiry: Duration,
        link_works: bool,
    ) -> Vec<(String, usize)> {
        if !link_works {
            return Vec::new();
        }
        let silent: Vec<String> = self
            .by_node
            .iter()
            .filter(|(_, peer)| peer.last_seen.elapsed() > expiry)
            .map(|(node, _)| node.clone())
            .collect();
        silent
            .into_iter()
            .filter_map(|node| {
                let peer = self.by_node.remove(&node)?;
                for ((channel, _), entry) in &peer.members {
                    hub.remote_leave(channel, &entry.key);
                }
                for user in peer.signins.values() {
                    hub.remote_sign_out(user);
                }
                Some((node, peer.members.len()))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;
    use crate::hub::{HubLimits, SocketLink};
    use crate::protocol::SocketId;
    use crate::protocol::messages::parse_presence_member;

    fn entry(channel: &str, socket: &str, user: &str) -> MemberEntry {
        MemberEntry {
            channel: channel.into(),
            socket: socket.into(),
            user_id: json!(user),
            key: user.into(),
            user_info: json!({}),
        }
    }

    /// A hub with one local member (user "1") in presence-room, and what
    /// that member's socket receives.
    fn hub_with_listener() -> (Hub, crate::hub::Inbox) {
        let hub = Hub::new(HubLimits {
            max_cached_channels: 100,
            max_presence_members: 100,
            cache_ttl: Duration::from_secs(60),
        });
        let (link, mut rx) = SocketLink::new(SocketId::random(), 64);
        let member = parse_presence_member(Some(r#"{"user_id":"1"}"#), 128, 1024).unwrap();
        let channel = ChannelName::parse("presence-room", 200).unwrap();
        hub.subscribe(&Arc::new(link), &channel, Some(member))
            .unwrap();
        while rx.try_recv().is_some() {}
        (hub, rx)
    }

    fn events(rx: &mut crate::hub::Inbox) -> Vec<String> {
        let mut seen = Vec::new();
        while let Some(frame) = rx.try_recv() {
            let value: serde_json::Value = serde_json::from_str(frame.as_str()).unwrap();
            let user = serde_json::from_str::<serde_json::Value>(value["data"].as_str().unwrap())
                .unwrap()["user_id"]
                .clone();
            seen.push(format!(
                "{} {}",
                value["event"].as_str().unwrap(),
                user.as_str().unwrap()
            ));
        }
        seen
    }

    #[test]
    fn a_snapshot_changes_only_what_differs() {
        let (hub, mut rx) = hub_with_listener();
        let mut peers = Peers::default();
        peers.snapshot(&hub, "n2", vec![entry("presence-room", "a", "2")], vec![]);
        assert_eq!(events(&mut rx), ["pusher_internal:member_added 2"]);

        // The same member again plus a newcomer: only the newcomer is news.
        peers.snapshot(
            &hub,
            "n2",
            vec![
                entry("presence-room", "a", "2"),
                entry("presence-room", "b", "3"),
            ],
            vec![],
        );
        assert_eq!(events(&mut rx), ["pusher_internal:member_added 3"]);

        // User 2 moved to another socket of the same node: no flicker.
        peers.snapshot(
            &hub,
            "n2",
            vec![
                entry("presence-room", "c", "2"),
                entry("presence-room", "b", "3"),
            ],
            vec![],
        );
        assert_eq!(events(&mut rx), Vec::<String>::new());

        peers.snapshot(&hub, "n2", vec![], vec![]);
        let mut left = events(&mut rx);
        left.sort();
        assert_eq!(
            left,
            [
                "pusher_internal:member_removed 2",
                "pusher_internal:member_removed 3"
            ]
        );
    }

    #[test]
    fn a_replay_from_a_node_not_heard_before_is_not_delivered() {
        let mut peers = Peers::default();
        let now = Instant::now();
        assert_eq!(peers.arrive("n2", 5, true, now), Arrival::Duplicate);
        assert_eq!(peers.arrive("n2", 9, false, now), Arrival::New);
        assert_eq!(peers.arrive("n2", 7, true, now), Arrival::Duplicate);
        assert_eq!(peers.lowest_missing("n2"), Some(10));
    }

    #[test]
    fn a_silent_node_is_expired_with_its_members() {
        let (hub, mut rx) = hub_with_listener();
        let mut peers = Peers::default();
        peers.joined(&hub, "n2", entry("presence-room", "a", "2"));
        // A duplicate announcement counts once.
        peers.joined(&hub, "n2", entry("presence-room", "a", "2"));
        assert_eq!(events(&mut rx), ["pusher_internal:member_added 2"]);
        assert!(peers.expire(&hub, Duration::from_secs(60), true).is_empty());
        std::thread::sleep(Duration::from_millis(20));
        assert!(
            peers
                .expire(&hub, Duration::from_millis(10), false)
                .is_empty(),
            "not while this node's own link is down"
        );
        assert!(events(&mut rx).is_empty());
        let gone = peers.expire(&hub, Duration::from_millis(10), true);
        assert_eq!(gone, [("n2".to_owned(), 1)]);
        assert_eq!(events(&mut rx), ["pusher_internal:member_removed 2"]);
        assert_eq!(peers.count(), 0);
    }
}
