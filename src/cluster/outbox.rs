//! What a node has to tell the others, waiting to be published, in two
//! lanes and a map, so that what other nodes are owed is never lost to
//! bookkeeping:
//!
//! - **events** (events and terminations, which reach users on the other
//!   nodes) go first, always;
//! - **state** (presence joins and leaves, sign-ins, heartbeats, snapshots,
//!   queries) after them, in the order produced;
//! - **counts** (subscriber counts per channel, for webhooks) are not
//!   queued at all: only the latest count of each channel waits, so a client
//!   churning subscriptions makes one message per channel per publishing
//!   round, not one per change.
//!
//! Each lane is bounded; when one is full its new messages are dropped and
//! counted, and the other lane is not affected.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::{Notify, mpsc};

/// Messages one lane holds before new ones are dropped.
const LANE_CAPACITY: usize = 65_536;

/// Messages published in one round trip at most.
pub const BATCH: usize = 128;

/// Which lane a message takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    Events,
    State,
}

/// The producing side, shared by everything on the node.
pub struct Outbox {
    events: mpsc::Sender<String>,
    state: mpsc::Sender<String>,
    /// The latest count of each channel whose count changed since the
    /// publisher last looked. A leaf lock of the contract in `hub/mod.rs`.
    counts: Mutex<HashMap<String, usize>>,
    counts_ready: Notify,
}

/// The publisher's side of the lanes.
pub struct Lanes {
    events: mpsc::Receiver<String>,
    state: mpsc::Receiver<String>,
}

impl Outbox {
    pub fn new() -> (Self, Lanes) {
        let (events, events_rx) = mpsc::channel(LANE_CAPACITY);
        let (state, state_rx) = mpsc::channel(LANE_CAPACITY);
        let outbox = Self {
            events,
            state,
            counts: Mutex::new(HashMap::new()),
            counts_ready: Notify::new(),
        };
        (
            outbox,
            Lanes {
                events: events_rx,
                state: state_rx,
            },
        )
    }

    /// Queues `text` in `lane`; false when the lane is full (dropped).
    pub fn push(&self, lane: Lane, text: String) -> bool {
        let sender = match lane {
            Lane::Events => &self.events,
            Lane::State => &self.state,
        };
        sender.try_send(text).is_ok()
    }

    /// Records `channel`'s latest count for the next round.
    pub fn set_count(&self, channel: &str, count: usize) {
        let mut counts = self.lock_counts();
        match counts.get_mut(channel) {
            Some(pending) => *pending = count,
            None => {
                counts.insert(channel.to_owned(), count);
            }
        }
        drop(counts);
        self.counts_ready.notify_one();
    }

    fn lock_counts(&self) -> std::sync::MutexGuard<'_, HashMap<String, usize>> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Lanes {
    /// The next batch to publish, events first, then state, then counts;
    /// `None` once every producer is gone.
    pub async fn next_batch(
        &mut self,
        outbox: &Outbox,
        count_message: impl Fn(String, usize) -> Option<String>,
    ) -> Option<Vec<String>> {
        loop {
            if let Some(batch) = Self::drain(&mut self.events) {
                return Some(batch);
            }
            if let Some(batch) = Self::drain(&mut self.state) {
                return Some(batch);
            }
            let counts = std::mem::take(&mut *outbox.lock_counts());
            if !counts.is_empty() {
                return Some(
                    counts
                        .into_iter()
                        .filter_map(|(channel, count)| count_message(channel, count))
                        .collect(),
                );
            }
            tokio::select! {
                biased;
                first = self.events.recv() => {
                    let first = first?;
                    return Some(Self::with_rest(first, &mut self.events));
                }
                first = self.state.recv() => {
                    let first = first?;
                    return Some(Self::with_rest(first, &mut self.state));
                }
                () = outbox.counts_ready.notified() => {}
            }
        }
    }

    fn drain(lane: &mut mpsc::Receiver<String>) -> Option<Vec<String>> {
        let first = lane.try_recv().ok()?;
        Some(Self::with_rest(first, lane))
    }

    fn with_rest(first: String, lane: &mut mpsc::Receiver<String>) -> Vec<String> {
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match lane.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        batch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(channel: String, count: usize) -> Option<String> {
        Some(format!("{channel}={count}"))
    }

    #[tokio::test]
    async fn events_go_first_and_counts_are_coalesced() {
        let (outbox, mut lanes) = Outbox::new();
        for n in 0..10_000 {
            outbox.set_count(&format!("c{}", n % 3), n);
        }
        assert!(outbox.push(Lane::State, "joined".into()));
        assert!(outbox.push(Lane::Events, "event".into()));
        assert_eq!(lanes.next_batch(&outbox, count).await.unwrap(), ["event"]);
        assert_eq!(lanes.next_batch(&outbox, count).await.unwrap(), ["joined"]);
        let mut counts = lanes.next_batch(&outbox, count).await.unwrap();
        counts.sort();
        assert_eq!(counts, ["c0=9999", "c1=9997", "c2=9998"]);
    }

    #[tokio::test]
    async fn a_full_state_lane_leaves_room_for_events() {
        let (outbox, mut lanes) = Outbox::new();
        while outbox.push(Lane::State, "joined".into()) {}
        assert!(
            outbox.push(Lane::Events, "event".into()),
            "events have their own lane"
        );
        assert_eq!(lanes.next_batch(&outbox, count).await.unwrap(), ["event"]);
        let batch = lanes.next_batch(&outbox, count).await.unwrap();
        assert_eq!(batch.len(), BATCH);
    }
}
