//! What a node has to tell the others, waiting to be published, kept so
//! that what other nodes are owed survives a Redis outage:
//!
//! - **events** (events and terminations, which reach users on the other
//!   nodes) are numbered and kept in a log for [`REPLAY_WINDOW`], published
//!   or not, up to [`MAX_EVENT_LOG_BYTES`]. While Redis is away they wait
//!   there, in order, and go out when it answers again; a node that missed
//!   some (its own link was down) asks for them again by number and they
//!   are published once more ([`Outbox::replay_from`]). Only an event that
//!   leaves the log unpublished (too old, or pushed out by newer ones) is
//!   lost, and counted.
//! - **control** (heartbeats, hellos, requests to resend, channel count
//!   queries and answers) goes first of all: small, and what tells the
//!   other nodes this one is alive, so that a large snapshot never delays
//!   it into an expiry. Up to [`MAX_CONTROL_BYTES`]; past it, dropped.
//! - **state** (presence joins and leaves, sign-ins, snapshots) goes after
//!   the events, in the order produced, up to [`MAX_STATE_BYTES`]. What
//!   cannot be published is not kept: a fresh snapshot replaces it once
//!   publishing works ([`Outbox::take_resync`]).
//! - **counts** (subscriber counts per channel, for webhooks) are not
//!   queued at all: only the latest count of each channel waits, so a client
//!   churning subscriptions makes one message per channel per publishing
//!   round, not one per change.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// How long an event stays in the log: the longest Redis outage whose
/// events are still delivered afterwards, and how long a node that missed
/// some may ask for them again.
pub const REPLAY_WINDOW: Duration = Duration::from_secs(60);

/// Bytes of events the log holds at most (published or waiting).
pub const MAX_EVENT_LOG_BYTES: usize = 32 << 20;

/// Bytes of state messages waiting at most; past it they are dropped and a
/// snapshot is owed instead. It holds the largest snapshot a node sends
/// (48 MiB, queued at once) with room to spare.
pub const MAX_STATE_BYTES: usize = 64 << 20;

/// Bytes of control messages waiting at most: as much as one message a
/// receiver accepts, so that a node's channel count answer on a forum with
/// very many channels is never the one dropped.
pub const MAX_CONTROL_BYTES: usize = super::MAX_BUS_MESSAGE_BYTES;

/// Messages published in one round trip at most...
pub const BATCH: usize = 128;

/// ...and bytes, past the first message: a snapshot's parts go one round
/// trip each, with control messages between them.
pub const BATCH_BYTES: usize = 1 << 20;

/// One numbered event, as published.
struct Logged {
    seq: u64,
    at: Instant,
    text: Arc<str>,
}

/// The events of this node, oldest first, numbered without gaps.
struct EventLog {
    entries: VecDeque<Logged>,
    bytes: usize,
    /// The number the next event gets.
    next_seq: u64,
    /// The next event to publish (`next_seq` when all were; moved back
    /// by a replay).
    cursor: u64,
    /// The first event never published yet: those below it that go out
    /// again are replays.
    fresh_from: u64,
    /// Events that left the log unpublished.
    dropped: u64,
    /// Events published again because another node asked.
    replayed: u64,
}

impl EventLog {
    fn new() -> Self {
        Self {
            entries: VecDeque::new(),
            bytes: 0,
            next_seq: 1,
            cursor: 1,
            fresh_from: 1,
            dropped: 0,
            replayed: 0,
        }
    }

    /// Lets go of events past the window or the byte budget, oldest first;
    /// one not yet published is counted as dropped.
    fn trim(&mut self, now: Instant) {
        while let Some(oldest) = self.entries.front() {
            let too_old = now.duration_since(oldest.at) > REPLAY_WINDOW;
            if !too_old && self.bytes <= MAX_EVENT_LOG_BYTES {
                break;
            }
            let seq = oldest.seq;
            self.bytes -= oldest.text.len();
            self.entries.pop_front();
            self.cursor = self.cursor.max(seq + 1);
            if seq >= self.fresh_from {
                self.dropped += 1;
                self.fresh_from = seq + 1;
            }
        }
    }

    fn first_seq(&self) -> u64 {
        self.entries
            .front()
            .map_or(self.next_seq, |entry| entry.seq)
    }
}

/// A lane of messages in the order produced, bounded in bytes.
#[derive(Default)]
struct Lane {
    messages: VecDeque<String>,
    bytes: usize,
}

impl Lane {
    /// Queues `text`; false (not queued) past `max` bytes.
    fn push(&mut self, text: String, max: usize) -> bool {
        if self.bytes + text.len() > max {
            return false;
        }
        self.bytes += text.len();
        self.messages.push_back(text);
        true
    }

    /// The next batch: [`BATCH`] messages or [`BATCH_BYTES`] at most.
    fn take(&mut self) -> Option<Batch> {
        let mut batch = Vec::new();
        let mut bytes = 0;
        while batch.len() < BATCH && (batch.is_empty() || bytes < BATCH_BYTES) {
            let Some(text) = self.messages.pop_front() else {
                break;
            };
            bytes += text.len();
            batch.push(text);
        }
        self.bytes -= bytes;
        (!batch.is_empty()).then_some(Batch::Other(batch))
    }
}

/// What the publisher takes next.
#[derive(Debug, PartialEq)]
pub enum Batch {
    /// Events `first..=last`, in order; those below `fresh_from` were
    /// published before and go out again as replays.
    Events {
        first: u64,
        last: u64,
        fresh_from: u64,
        texts: Vec<Arc<str>>,
    },
    /// State messages, or count messages.
    Other(Vec<String>),
}

impl Batch {
    #[cfg(test)]
    pub fn texts(&self) -> Vec<&str> {
        match self {
            Batch::Events { texts, .. } => texts.iter().map(|text| &**text).collect(),
            Batch::Other(texts) => texts.iter().map(String::as_str).collect(),
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Batch::Events { texts, .. } => texts.len(),
            Batch::Other(texts) => texts.len(),
        }
    }
}

/// The totals of the event log, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogStatus {
    pub dropped: u64,
    pub replayed: u64,
    /// Bytes of events published or waiting in the log.
    pub bytes: usize,
    /// Events waiting to be published.
    pub waiting: u64,
}

/// Shared by everything on the node that has something to tell the others.
pub struct Outbox {
    events: Mutex<EventLog>,
    control: Mutex<Lane>,
    state: Mutex<Lane>,
    /// The latest count of each channel whose count changed since the
    /// publisher last looked.
    counts: Mutex<HashMap<String, usize>>,
    /// Set when state was lost (not published, or over the budget): the
    /// others need this node's snapshot.
    resync: AtomicBool,
    ready: Notify,
}

/// A leaf lock: nothing is taken under it.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Outbox {
    pub fn new() -> Self {
        Self {
            events: Mutex::new(EventLog::new()),
            control: Mutex::new(Lane::default()),
            state: Mutex::new(Lane::default()),
            counts: Mutex::new(HashMap::new()),
            resync: AtomicBool::new(false),
            ready: Notify::new(),
        }
    }

    /// Logs an event: `text_for` gets its number and writes it as
    /// published. Nothing is logged when it gives `None`.
    pub fn push_event(&self, text_for: impl FnOnce(u64) -> Option<String>) {
        let mut log = lock(&self.events);
        let seq = log.next_seq;
        let Some(text) = text_for(seq) else {
            return;
        };
        log.next_seq += 1;
        log.bytes += text.len();
        log.entries.push_back(Logged {
            seq,
            at: Instant::now(),
            text: text.into(),
        });
        log.trim(Instant::now());
        drop(log);
        self.ready.notify_one();
    }

    /// Queues a state message; past [`MAX_STATE_BYTES`] it is dropped and
    /// a snapshot is owed instead (false).
    pub fn push_state(&self, text: String) -> bool {
        let queued = lock(&self.state).push(text, MAX_STATE_BYTES);
        if queued {
            self.ready.notify_one();
        } else {
            self.owe_resync();
        }
        queued
    }

    /// Queues a control message; past [`MAX_CONTROL_BYTES`] it is dropped
    /// (false): each is asked or said again.
    pub fn push_control(&self, text: String) -> bool {
        let queued = lock(&self.control).push(text, MAX_CONTROL_BYTES);
        if queued {
            self.ready.notify_one();
        }
        queued
    }

    /// Records `channel`'s latest count for the next round.
    pub fn set_count(&self, channel: &str, count: usize) {
        let mut counts = lock(&self.counts);
        match counts.get_mut(channel) {
            Some(pending) => *pending = count,
            None => {
                counts.insert(channel.to_owned(), count);
            }
        }
        drop(counts);
        self.ready.notify_one();
    }

    /// Publishes the logged events from `seq` on again (another node missed
    /// them); those already gone from the log cannot be. Returns how many
    /// will be published again.
    pub fn replay_from(&self, seq: u64) -> u64 {
        let mut log = lock(&self.events);
        let from = seq.max(log.first_seq());
        if from >= log.cursor {
            return 0;
        }
        let again = log.cursor - from;
        log.replayed += again;
        log.cursor = from;
        drop(log);
        self.ready.notify_one();
        again
    }

    /// Events `first..=last` went out: the publisher moves past them,
    /// unless a replay moved it back meanwhile.
    pub fn published(&self, first: u64, last: u64) {
        let mut log = lock(&self.events);
        if (first..=last).contains(&log.cursor) {
            log.cursor = last + 1;
        }
        log.fresh_from = log.fresh_from.max(last + 1);
    }

    /// Something this node had to say about its state was lost.
    pub fn owe_resync(&self) {
        self.resync.store(true, Ordering::Relaxed);
    }

    /// Whether a snapshot is owed (and no longer, once asked).
    pub fn take_resync(&self) -> bool {
        self.resync.swap(false, Ordering::Relaxed)
    }

    pub fn status(&self) -> LogStatus {
        let log = lock(&self.events);
        LogStatus {
            dropped: log.dropped,
            replayed: log.replayed,
            bytes: log.bytes,
            waiting: log.next_seq - log.cursor,
        }
    }

    /// The next batch to publish: control, events, state, then counts;
    /// waits until there is one.
    pub async fn next_batch(
        &self,
        count_message: impl Fn(String, usize) -> Option<String>,
    ) -> Batch {
        loop {
            if let Some(batch) = lock(&self.control).take() {
                return batch;
            }
            if let Some(batch) = self.take_events() {
                return batch;
            }
            if let Some(batch) = lock(&self.state).take() {
                return batch;
            }
            let counts = std::mem::take(&mut *lock(&self.counts));
            if !counts.is_empty() {
                return Batch::Other(
                    counts
                        .into_iter()
                        .filter_map(|(channel, count)| count_message(channel, count))
                        .collect(),
                );
            }
            // One consumer: a push made since the checks left a permit.
            self.ready.notified().await;
        }
    }

    fn take_events(&self) -> Option<Batch> {
        let mut log = lock(&self.events);
        log.trim(Instant::now());
        if log.cursor >= log.next_seq {
            return None;
        }
        let skip = (log.cursor - log.first_seq()) as usize;
        let mut bytes = 0;
        let texts: Vec<Arc<str>> = log
            .entries
            .iter()
            .skip(skip)
            .take(BATCH)
            .take_while(|entry| {
                let room = bytes == 0 || bytes < BATCH_BYTES;
                bytes += entry.text.len();
                room
            })
            .map(|entry| entry.text.clone())
            .collect();
        let first = log.cursor;
        Some(Batch::Events {
            first,
            last: first + texts.len() as u64 - 1,
            fresh_from: log.fresh_from,
            texts,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(channel: String, count: usize) -> Option<String> {
        Some(format!("{channel}={count}"))
    }

    fn event(outbox: &Outbox, name: &str) {
        let name = name.to_owned();
        outbox.push_event(move |seq| Some(format!("{seq}:{name}")));
    }

    #[tokio::test]
    async fn events_go_first_and_counts_are_coalesced() {
        let outbox = Outbox::new();
        for n in 0..10_000 {
            outbox.set_count(&format!("c{}", n % 3), n);
        }
        assert!(outbox.push_state("joined".into()));
        event(&outbox, "event");
        let batch = outbox.next_batch(count).await;
        assert_eq!(batch.texts(), ["1:event"]);
        outbox.published(1, 1);
        assert_eq!(outbox.next_batch(count).await.texts(), ["joined"]);
        let batch = outbox.next_batch(count).await;
        let mut counts = batch.texts();
        counts.sort();
        assert_eq!(counts, ["c0=9999", "c1=9997", "c2=9998"]);
    }

    #[tokio::test]
    async fn an_event_not_published_is_offered_again_in_order() {
        let outbox = Outbox::new();
        for name in ["a", "b", "c"] {
            event(&outbox, name);
        }
        let first_try = outbox.next_batch(count).await;
        assert_eq!(first_try.texts(), ["1:a", "2:b", "3:c"]);
        // Redis did not answer: nothing was marked published.
        event(&outbox, "d");
        let second_try = outbox.next_batch(count).await;
        assert_eq!(second_try.texts(), ["1:a", "2:b", "3:c", "4:d"]);
        outbox.published(1, 4);
        assert_eq!(outbox.status().waiting, 0);
    }

    #[tokio::test]
    async fn a_replay_publishes_from_the_asked_number_on() {
        let outbox = Outbox::new();
        for name in ["a", "b", "c"] {
            event(&outbox, name);
        }
        outbox.published(1, 3);
        assert_eq!(outbox.replay_from(2), 2);
        let again = outbox.next_batch(count).await;
        assert_eq!(again.texts(), ["2:b", "3:c"]);
        assert!(
            matches!(again, Batch::Events { fresh_from: 4, .. }),
            "replays"
        );
        // A replay asked while a batch was out is not skipped by its ack.
        assert_eq!(outbox.replay_from(1), 1);
        outbox.published(2, 3);
        assert_eq!(
            outbox.next_batch(count).await.texts(),
            ["1:a", "2:b", "3:c"]
        );
        // Nothing to replay past what was published.
        outbox.published(1, 3);
        assert_eq!(outbox.replay_from(4), 0);
        assert_eq!(outbox.status().replayed, 3);
    }

    #[test]
    fn the_log_is_bounded_in_bytes_and_counts_what_it_drops() {
        let outbox = Outbox::new();
        let big = "x".repeat(1 << 20);
        for _ in 0..40 {
            let big = big.clone();
            outbox.push_event(move |_| Some(big));
        }
        let status = outbox.status();
        assert!(status.bytes <= MAX_EVENT_LOG_BYTES, "{status:?}");
        assert_eq!(status.dropped, 40 - status.waiting);
        assert_eq!(status.dropped, 40 - (MAX_EVENT_LOG_BYTES >> 20) as u64);
    }

    #[test]
    fn a_full_state_lane_owes_a_snapshot_and_leaves_room_for_events() {
        let outbox = Outbox::new();
        let chunk = "j".repeat(64 << 10);
        while outbox.push_state(chunk.clone()) {}
        assert!(outbox.take_resync(), "a snapshot is owed");
        assert!(!outbox.take_resync(), "once");
        event(&outbox, "event");
        assert_eq!(outbox.status().waiting, 1, "events have their own budget");
    }
}
