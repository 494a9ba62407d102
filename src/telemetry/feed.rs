//! The recent-activity feed the dashboard shows: the last few hundred
//! connections, subscriptions and events, like the old server's debug console
//! but without having to run it in a terminal.
//!
//! A bounded ring with sequence numbers: the dashboard polls for items after
//! the last one it saw, so a slow or closed browser tab costs nothing.
//! Event data is cut short; the feed is for seeing that things happen, not
//! for reading private messages in full.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// Items kept for a dashboard that opens later.
const CAPACITY: usize = 300;

/// Characters of event data shown.
const DATA_PREVIEW_CHARS: usize = 200;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FeedKind {
    Connected,
    Disconnected,
    Subscribed,
    Unsubscribed,
    ApiEvent,
    ClientEvent,
}

/// One line of the dashboard's recent activity.
#[derive(Debug, Clone, Serialize)]
pub struct FeedItem {
    pub seq: u64,
    /// Milliseconds since the Unix epoch.
    pub at: u64,
    pub kind: FeedKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub socket_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    /// Close code, event data preview, or other detail.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

impl FeedItem {
    pub fn new(kind: FeedKind) -> Self {
        Self {
            seq: 0,
            at: 0,
            kind,
            socket_id: None,
            channel: None,
            event: None,
            detail: String::new(),
        }
    }

    pub fn socket(mut self, id: impl ToString) -> Self {
        self.socket_id = Some(id.to_string());
        self
    }

    pub fn channel(mut self, channel: &str) -> Self {
        self.channel = Some(channel.to_owned());
        self
    }

    pub fn event(mut self, event: &str) -> Self {
        self.event = Some(event.to_owned());
        self
    }

    /// Adds free text (a close code, a refusal's reason).
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = detail.into();
        self
    }

    /// The start of the event's `data` (a string, or JSON), marked when cut.
    pub fn data(self, data: &serde_json::Value) -> Self {
        let text = match data {
            serde_json::Value::String(text) => std::borrow::Cow::Borrowed(text.as_str()),
            other => std::borrow::Cow::Owned(other.to_string()),
        };
        let mut preview: String = text.chars().take(DATA_PREVIEW_CHARS).collect();
        if preview.len() < text.len() {
            preview.push('…');
        }
        self.detail(preview)
    }
}

#[derive(Debug, Default)]
struct Ring {
    next_seq: u64,
    items: VecDeque<FeedItem>,
}

/// The dashboard's recent activity: the last items, in a ring of fixed size.
#[derive(Debug, Default)]
pub struct Feed {
    ring: Mutex<Ring>,
}

impl Feed {
    /// Stamps `item` with the time and a sequence number, dropping the oldest
    /// when the ring is full.
    pub fn record(&self, mut item: FeedItem) {
        item.at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let mut ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        ring.next_seq += 1;
        item.seq = ring.next_seq;
        if ring.items.len() == CAPACITY {
            ring.items.pop_front();
        }
        ring.items.push_back(item);
    }

    /// Items with a sequence number above `after`, oldest first.
    pub fn since(&self, after: u64) -> Vec<FeedItem> {
        let ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        ring.items
            .iter()
            .filter(|item| item.seq > after)
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_latest_items_in_order() {
        let feed = Feed::default();
        for i in 0..CAPACITY + 5 {
            feed.record(FeedItem::new(FeedKind::ApiEvent).event(&format!("e{i}")));
        }
        let all = feed.since(0);
        assert_eq!(all.len(), CAPACITY);
        assert_eq!(all[0].seq, 6);
        assert_eq!(feed.since(all[CAPACITY - 2].seq).len(), 1);
    }

    #[test]
    fn cuts_long_data() {
        let item =
            FeedItem::new(FeedKind::ApiEvent).data(&serde_json::Value::String("x".repeat(1000)));
        assert_eq!(item.detail.chars().count(), DATA_PREVIEW_CHARS + 1);
        assert!(item.detail.ends_with('…'));
    }
}
