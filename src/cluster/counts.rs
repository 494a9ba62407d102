//! The other nodes' subscriber counts per channel, kept only when webhooks
//! need cluster-wide occupancy: each node tells its own count of a channel
//! when it changes, and every node sums them. Whoever watches is told the
//! channels whose sum may have changed.

use std::collections::HashMap;

use tokio::sync::mpsc;

#[derive(Debug, Default)]
pub struct RemoteCounts {
    /// channel → node → that node's subscribers.
    by_channel: HashMap<String, HashMap<String, usize>>,
    watcher: Option<mpsc::UnboundedSender<String>>,
}

impl RemoteCounts {
    pub fn watch(&mut self) -> mpsc::UnboundedReceiver<String> {
        let (sender, receiver) = mpsc::unbounded_channel();
        self.watcher = Some(sender);
        receiver
    }

    pub fn watched(&self) -> bool {
        self.watcher.is_some()
    }

    fn changed(&self, channel: &str) {
        if let Some(watcher) = &self.watcher {
            let _ = watcher.send(channel.to_owned());
        }
    }

    /// `node` now has `count` subscribers on `channel`.
    pub fn set(&mut self, node: &str, channel: &str, count: usize) {
        let nodes = self.by_channel.entry(channel.to_owned()).or_default();
        let before = if count == 0 {
            nodes.remove(node)
        } else {
            nodes.insert(node.to_owned(), count)
        };
        if nodes.is_empty() {
            self.by_channel.remove(channel);
        }
        if before.unwrap_or(0) != count {
            self.changed(channel);
        }
    }

    /// Replaces everything known of `node` with `counts`.
    pub fn replace(&mut self, node: &str, counts: Vec<(String, usize)>) {
        let fresh: HashMap<String, usize> = counts.into_iter().collect();
        let stale: Vec<String> = self
            .by_channel
            .iter()
            .filter(|(channel, nodes)| nodes.contains_key(node) && !fresh.contains_key(*channel))
            .map(|(channel, _)| channel.clone())
            .collect();
        for channel in stale {
            self.set(node, &channel, 0);
        }
        for (channel, count) in fresh {
            self.set(node, &channel, count);
        }
    }

    /// Forgets a node that went silent.
    pub fn forget(&mut self, node: &str) {
        self.replace(node, Vec::new());
    }

    /// Subscribers of `channel` on every other node.
    pub fn total(&self, channel: &str) -> usize {
        self.by_channel
            .get(channel)
            .map_or(0, |nodes| nodes.values().sum())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_nodes_and_tells_changes() {
        let mut counts = RemoteCounts::default();
        let mut changes = counts.watch();
        counts.set("a", "room", 2);
        counts.set("b", "room", 1);
        counts.set("b", "room", 1);
        assert_eq!(counts.total("room"), 3);
        counts.forget("a");
        assert_eq!(counts.total("room"), 1);
        counts.replace("b", vec![("hall".into(), 4)]);
        assert_eq!((counts.total("room"), counts.total("hall")), (0, 4));
        let mut told = Vec::new();
        while let Ok(channel) = changes.try_recv() {
            told.push(channel);
        }
        assert_eq!(told, ["room", "room", "room", "room", "hall"]);
    }
}
