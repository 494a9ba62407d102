//! Writers: a few tasks that put queued frames on plain sockets, each for
//! many sockets, so that a delivery wakes no task of its own.
//!
//! Waking the recipient's session to write one frame was most of what a
//! delivery cost in user space at moderate rates (queue, wake, poll, select,
//! schedule: about 6 µs of 8 on the 2-core bench machine, bench/PROFILE.md).
//! A fan-out now queues the frame and, the first time a socket gets a frame
//! since its last flush, hands the socket to its writer. The writer wakes
//! once for all the sockets handed to it meanwhile and flushes each one's
//! queue in one vectored write. At a moderate rate that is one wake per
//! writer per event; at full speed the writer runs behind the fan-out and
//! every flush carries several frames, as the sessions' batches did.
//!
//! There is one writer per CPU; sockets are dealt to them in turn.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Once};

use tokio::sync::Notify;

use super::mailbox::Mailbox;
use super::sent::SentTotals;

/// The writer tasks of one server.
#[derive(Debug)]
pub struct Writers {
    shards: Box<[Arc<Shard>]>,
    /// Counts what the writers send (one update per round, not per socket:
    /// the counter is shared by every thread).
    sent: Arc<SentTotals>,
    next: AtomicUsize,
}

/// One writer task and the sockets waiting for it.
#[derive(Debug)]
struct Shard {
    /// A leaf lock of the contract in `hub/mod.rs`: nothing is taken under it.
    waiting: Mutex<Vec<Arc<Mailbox>>>,
    wake: Notify,
    started: Once,
}

/// A socket's writer.
#[derive(Debug, Clone)]
pub struct WriterHandle(Arc<Shard>);

impl Writers {
    /// One writer per available CPU, counting into `sent`.
    pub fn new(sent: Arc<SentTotals>) -> Self {
        let count = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self::with_count(count, sent)
    }

    /// `count` writer tasks (tests choose one), adding what they write to `sent`.
    pub fn with_count(count: usize, sent: Arc<SentTotals>) -> Self {
        Self {
            sent,
            shards: (0..count.max(1))
                .map(|_| {
                    Arc::new(Shard {
                        waiting: Mutex::default(),
                        wake: Notify::new(),
                        started: Once::new(),
                    })
                })
                .collect(),
            next: AtomicUsize::new(0),
        }
    }

    /// The totals of what is written to clients, which the sessions add to.
    pub fn sent(&self) -> &SentTotals {
        &self.sent
    }

    /// The writer for a new socket. Starts it on the current tokio runtime
    /// the first time.
    pub fn assign(&self) -> WriterHandle {
        let n = self.next.fetch_add(1, Ordering::Relaxed) % self.shards.len();
        let shard = &self.shards[n];
        shard.started.call_once(|| {
            tokio::spawn(run(shard.clone(), self.sent.clone()));
        });
        WriterHandle(shard.clone())
    }
}

impl WriterHandle {
    /// Hands over a socket with newly queued frames.
    pub(super) fn push(&self, mailbox: Arc<Mailbox>) {
        let was_empty = {
            let mut waiting = self.0.lock();
            waiting.push(mailbox);
            waiting.len() == 1
        };
        if was_empty {
            self.0.wake.notify_one();
        }
    }
}

impl Shard {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Mailbox>>> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Sockets a writer flushes before it lets other tasks on its thread run.
const FLUSHES_BETWEEN_YIELDS: usize = 64;

async fn run(shard: Arc<Shard>, sent: Arc<SentTotals>) {
    let mut batch = Vec::new();
    loop {
        shard.wake.notified().await;
        loop {
            std::mem::swap(&mut batch, &mut *shard.lock());
            if batch.is_empty() {
                break;
            }
            // Yielding now and then lets the HTTP API and the sessions on
            // this thread run during a long round: events keep arriving, and
            // a socket flushed later in the round carries more frames.
            let (mut messages, mut bytes) = (0, 0);
            for (n, mailbox) in batch.drain(..).enumerate() {
                let (flushed, flushed_bytes) = mailbox.flush();
                messages += flushed;
                bytes += flushed_bytes;
                if n % FLUSHES_BETWEEN_YIELDS == FLUSHES_BETWEEN_YIELDS - 1 {
                    sent.add(std::mem::take(&mut messages), std::mem::take(&mut bytes));
                    tokio::task::yield_now().await;
                }
            }
            sent.add(messages, bytes);
        }
    }
}
