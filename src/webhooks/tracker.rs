//! Which channel and presence changes become webhooks, and when.
//!
//! `channel_occupied` is sent when a channel's subscribers in the whole
//! cluster go from none to some. `channel_vacated` and `member_removed` wait
//! [`SETTLE`] (Pusher's three seconds): a page reload unsubscribes and
//! subscribes again within it, and then nothing is sent at all.
//! `subscription_count` (not for presence channels, as Pusher) is sent at
//! most once per tick per channel, with the count at that moment, and only
//! when it differs from the last one sent; a channel dropping to none says
//! so with `channel_vacated` instead.
//!
//! The tracker is plain state with the time passed in, so its rules are
//! tested without a clock.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::event::{WebhookEvent, user_id_text};

/// How long a vacated channel or a departed member waits before it is told.
pub const SETTLE: Duration = Duration::from_secs(3);

#[derive(Debug, Default)]
pub struct Tracker {
    /// This node's subscribers per channel (channels with none are absent).
    local: HashMap<String, usize>,
    /// Channels told as occupied (and not yet as vacated).
    occupied: HashSet<String>,
    /// Occupied channels that emptied, and when they may be told vacated.
    vacating: HashMap<String, Instant>,
    /// Members who left, by (channel, user id), and when they may be told.
    leaving: HashMap<(String, String), Instant>,
    /// Channels whose subscription count may have changed since the last tick.
    counts_changed: HashSet<String>,
    /// The last subscription count sent per channel.
    counts_sent: HashMap<String, usize>,
}

fn is_presence(channel: &str) -> bool {
    channel.starts_with("presence-")
}

impl Tracker {
    /// This node's subscribers of `channel` are now `count`.
    pub fn set_local(&mut self, channel: &str, count: usize) {
        if count == 0 {
            self.local.remove(channel);
        } else {
            self.local.insert(channel.to_owned(), count);
        }
    }

    pub fn local(&self, channel: &str) -> usize {
        self.local.get(channel).copied().unwrap_or(0)
    }

    /// `channel` has `total` subscribers in the cluster now.
    pub fn counted(&mut self, channel: &str, total: usize, now: Instant) -> Option<WebhookEvent> {
        if !is_presence(channel) {
            self.counts_changed.insert(channel.to_owned());
        }
        if total > 0 {
            if self.vacating.remove(channel).is_some() || self.occupied.contains(channel) {
                return None;
            }
            self.occupied.insert(channel.to_owned());
            return Some(WebhookEvent::ChannelOccupied {
                channel: channel.to_owned(),
            });
        }
        if self.occupied.contains(channel) && !self.vacating.contains_key(channel) {
            self.vacating.insert(channel.to_owned(), now + SETTLE);
        }
        None
    }

    /// A presence member's first socket joined (`joined`) or last one left.
    pub fn member(
        &mut self,
        channel: &str,
        user_id: &Value,
        joined: bool,
        now: Instant,
    ) -> Option<WebhookEvent> {
        let key = (channel.to_owned(), user_id_text(user_id));
        if joined {
            if self.leaving.remove(&key).is_some() {
                return None;
            }
            return Some(WebhookEvent::MemberAdded {
                channel: key.0,
                user_id: key.1,
            });
        }
        self.leaving.insert(key, now + SETTLE);
        None
    }

    /// What has settled by `now`; `remote` gives a channel's subscribers on
    /// the other nodes.
    pub fn due(&mut self, now: Instant, remote: impl Fn(&str) -> usize) -> Vec<WebhookEvent> {
        let local = &self.local;
        let total = |channel: &str| local.get(channel).copied().unwrap_or(0) + remote(channel);
        let mut events = Vec::new();
        let left: Vec<(String, String)> = self
            .leaving
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(key, _)| key.clone())
            .collect();
        for key in left {
            self.leaving.remove(&key);
            events.push(WebhookEvent::MemberRemoved {
                channel: key.0,
                user_id: key.1,
            });
        }
        let vacated: Vec<String> = self
            .vacating
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(channel, _)| channel.clone())
            .collect();
        for channel in vacated {
            self.vacating.remove(&channel);
            if total(&channel) == 0 {
                self.occupied.remove(&channel);
                events.push(WebhookEvent::ChannelVacated { channel });
            }
        }
        for channel in std::mem::take(&mut self.counts_changed) {
            let count = total(&channel);
            if count == 0 {
                self.counts_sent.remove(&channel);
            } else if self.counts_sent.insert(channel.clone(), count) != Some(count) {
                events.push(WebhookEvent::SubscriptionCount {
                    channel,
                    subscription_count: count,
                });
            }
        }
        events
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn names(events: &[WebhookEvent]) -> Vec<&'static str> {
        events.iter().map(|e| e.kind().name()).collect()
    }

    #[test]
    fn a_reload_inside_the_settle_time_sends_nothing() {
        let mut tracker = Tracker::default();
        let start = Instant::now();
        let first = tracker.counted("presence-room", 1, start);
        assert!(matches!(first, Some(WebhookEvent::ChannelOccupied { .. })));
        assert!(
            tracker
                .member("presence-room", &json!(7), true, start)
                .is_some()
        );
        // The tab reloads: leaves, then comes back a second later.
        assert_eq!(tracker.counted("presence-room", 0, start), None);
        assert_eq!(
            tracker.member("presence-room", &json!(7), false, start),
            None
        );
        let back = start + Duration::from_secs(1);
        assert_eq!(tracker.counted("presence-room", 1, back), None);
        assert_eq!(
            tracker.member("presence-room", &json!("7"), true, back),
            None
        );
        assert!(
            tracker
                .due(start + Duration::from_secs(10), |_| 1)
                .is_empty()
        );
    }

    #[test]
    fn leaving_for_good_is_told_after_the_settle_time() {
        let mut tracker = Tracker::default();
        let start = Instant::now();
        tracker.counted("presence-room", 1, start);
        tracker.member("presence-room", &json!(7), true, start);
        tracker.counted("presence-room", 0, start);
        tracker.member("presence-room", &json!(7), false, start);
        assert!(
            tracker
                .due(start + Duration::from_secs(2), |_| 0)
                .is_empty()
        );
        let events = tracker.due(start + SETTLE, |_| 0);
        assert_eq!(names(&events), ["member_removed", "channel_vacated"]);
        // Occupied again later: told again.
        let again = tracker.counted("presence-room", 1, start + Duration::from_secs(5));
        assert!(again.is_some());
    }

    #[test]
    fn subscription_counts_are_sent_once_per_change_and_not_for_presence() {
        let mut tracker = Tracker::default();
        let now = Instant::now();
        tracker.counted("private-a", 1, now);
        tracker.counted("private-a", 2, now);
        tracker.counted("presence-b", 1, now);
        let events = tracker.due(now, |channel| if channel == "private-a" { 2 } else { 1 });
        assert_eq!(
            events,
            [WebhookEvent::SubscriptionCount {
                channel: "private-a".into(),
                subscription_count: 2
            }]
        );
        tracker.counted("private-a", 2, now);
        assert!(tracker.due(now, |_| 2).is_empty());
    }
}
