//! A socket's mailbox: the bounded queue the hub writes frames into, and
//! the session's end of it ([`Inbox`]). The hub's handle on the socket
//! ([`super::link::SocketLink`]) queues into it; a writer
//! ([`super::writer`]) and the session drain it. Both of those use this
//! module, which uses neither.
//!
//! The queue is a `VecDeque` behind a mutex rather than tokio's mpsc
//! channel: an idle connection then holds no queue memory at all (the
//! channel allocates a block of 32 slots up front), and after a burst the
//! queue gives its memory back once drained (the channel keeps the blocks a
//! burst made it allocate for the connection's whole life).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::budget::{AddressLedger, weight};
use crate::protocol::close_code;

/// A serialized frame, shared by every recipient without copying.
pub type Frame = Utf8Bytes;

/// Slots a drained queue may keep; a larger one (left by a burst) is freed.
const KEEP_SLOTS: usize = 16;

/// Payload bytes one socket's queue may hold (besides its frame count):
/// a client that stops reading is dropped with 4100 once this much waits
/// for it, however large the events are, so what the server keeps alive for
/// it has a byte bound. A single frame larger than this is still queued
/// when nothing else waits (an event the server accepted must be deliverable
/// to a reading client).
pub const MAX_QUEUED_BYTES: usize = 2 * 1024 * 1024;

/// A connection the hub's writers may write frames to without its session.
pub trait DirectWire: Send + Sync + std::fmt::Debug {
    /// Writes `frames`, from the front, each as one text frame, as far as
    /// the socket takes them without waiting.
    fn try_write_texts(&self, frames: &VecDeque<Frame>) -> Written;
}

/// How far a direct write got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Written {
    /// Frames wholly in the kernel.
    pub whole: usize,
    /// The next frame's start is in the kernel too, and the wire holds its
    /// rest: the session must flush it.
    pub started: bool,
    /// Payload bytes of the frames written or started.
    pub bytes: u64,
}

#[derive(Debug)]
pub(super) struct Mailbox {
    /// Lock 2 of the contract in `hub/mod.rs` (under the hub's lock, above the wire's).
    queue: Mutex<Queue>,
    capacity: usize,
    /// Wakes the session when it has something to write (a stored permit
    /// covers a frame sent between its check and its wait).
    ready: Notify,
    /// Set when the session's end is dropped: frames are no longer taken.
    receiver_gone: AtomicBool,
    /// The close code someone asked for; 0 while nobody has.
    close_code: AtomicU16,
    /// Set with the close request when the client is known not to read:
    /// the session drops the connection instead of writing a goodbye.
    abandon: AtomicBool,
    /// Wakes the session when a close is requested.
    close_wake: Notify,
    wire: Option<Arc<dyn DirectWire>>,
}

#[derive(Debug, Default)]
struct Queue {
    frames: VecDeque<Frame>,
    /// Payload bytes of `frames`.
    bytes: usize,
    /// What is charged to the address's budget in all: for each frame
    /// queued, its bytes divided by the sockets it was queued to; and what
    /// left the queue but not yet the process (frames the session took and
    /// has not written, the rest of a frame a direct write cut short). A
    /// frame leaving the queue takes its bytes' share of what the queue is
    /// charged (no weight is kept per frame: a deque of them cost every
    /// connection its slots), and the last one takes the rest, so the
    /// charges always return whole.
    weight: usize,
    /// The part of `weight` that left the queue, until [`Inbox::written`].
    weight_taken: usize,
    /// The client address's ledger (`super::budget`), when it has one.
    ledger: Option<Arc<AddressLedger>>,
    /// The session took frames and has not handed them all to the socket.
    taken: bool,
    /// Frames were queued since the writer last flushed this socket.
    staged: bool,
    /// A direct write left part of a frame in the wire.
    flush_wanted: bool,
}

/// Why the session was woken.
#[derive(Debug)]
pub enum Wake {
    /// A frame to write.
    Frame(Frame),
    /// A direct write left part of a frame to finish: flush the socket.
    Flush,
}

/// The session's end of the mailbox.
#[derive(Debug)]
pub struct Inbox {
    mailbox: Arc<Mailbox>,
}

impl Mailbox {
    pub(super) fn new(
        capacity: usize,
        wire: Option<Arc<dyn DirectWire>>,
        ledger: Option<Arc<AddressLedger>>,
    ) -> Self {
        Self {
            queue: Mutex::new(Queue {
                ledger,
                ..Queue::default()
            }),
            capacity: capacity.max(1),
            ready: Notify::new(),
            receiver_gone: AtomicBool::new(false),
            close_code: AtomicU16::new(0),
            abandon: AtomicBool::new(false),
            close_wake: Notify::new(),
            wire,
        }
    }

    /// Queues `frame` (queued to `sharers` sockets in all). `None` when it
    /// is refused: the socket is gone, asked to close, or over its frame or
    /// byte budget (then asked to close with 4100). `Some(true)` when it is
    /// the first frame since the writer last flushed this socket.
    pub(super) fn queue_frame(&self, frame: Frame, sharers: usize) -> Option<bool> {
        if self.close_code.load(Ordering::Relaxed) != 0 {
            return None;
        }
        let mut queue = self.lock();
        // Checked under the lock: once the session has let go of its
        // inbox, nothing more reaches the socket.
        if self.receiver_gone.load(Ordering::Relaxed) {
            return None;
        }
        let over_budget = !queue.frames.is_empty() && queue.bytes + frame.len() > MAX_QUEUED_BYTES;
        if queue.frames.len() >= self.capacity || over_budget {
            drop(queue);
            self.request_close(close_code::OVER_CAPACITY);
            return None;
        }
        queue.push_back(frame, sharers);
        Some(!std::mem::replace(&mut queue.staged, true))
    }

    /// Wakes the session: it has something to write.
    pub(super) fn wake_session(&self) {
        self.ready.notify_one();
    }

    /// The client address this socket's queue is charged to, and what it
    /// holds queued, weighed; `None` without a ledger or once asked to close.
    pub(super) fn holding(&self) -> Option<(std::net::IpAddr, usize)> {
        if self.close_code.load(Ordering::Relaxed) != 0 {
            return None;
        }
        let queue = self.lock();
        let ledger = queue.ledger.as_ref()?;
        Some((ledger.ip, queue.weight))
    }

    /// Asks for a close with `code` that drops the connection without a
    /// goodbye.
    pub(super) fn request_drop(&self, code: u16) {
        self.abandon.store(true, Ordering::Release);
        self.request_close(code);
    }

    /// Whether the close asked for is a drop.
    pub(super) fn drop_requested(&self) -> bool {
        self.abandon.load(Ordering::Acquire)
    }

    /// Resolves with the requested close code once somebody asks for one.
    pub(super) async fn close_requested(&self) -> u16 {
        loop {
            let code = self.close_code.load(Ordering::Acquire);
            if code != 0 {
                return code;
            }
            self.close_wake.notified().await;
        }
    }

    /// The queue's slots, filled or not (what a burst left allocated).
    #[cfg(test)]
    pub(super) fn slots(&self) -> usize {
        self.lock().frames.capacity()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Asks the session to close with `code`; the first request wins.
    pub(super) fn request_close(&self, code: u16) {
        if self
            .close_code
            .compare_exchange(0, code, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.close_wake.notify_one();
        }
    }

    /// The writer's turn: writes what is queued straight to the wire,
    /// unless the session is writing. What the socket does not take now is
    /// left to the session, which is woken for it. Returns the frames and
    /// payload bytes written.
    pub(super) fn flush(&self) -> (u64, u64) {
        let mut queue = self.lock();
        queue.staged = false;
        let mut sent = (0, 0);
        if queue.frames.is_empty() || self.receiver_gone.load(Ordering::Relaxed) {
            return sent;
        }
        let wake_session = match &self.wire {
            Some(wire) if !queue.taken => loop {
                let written = wire.try_write_texts(&queue.frames);
                sent.0 += (written.whole + usize::from(written.started)) as u64;
                sent.1 += written.bytes;
                queue.drop_front(written.whole);
                if written.started {
                    queue.pop_front();
                    queue.flush_wanted = true;
                    break true;
                }
                if queue.frames.is_empty() {
                    break false;
                }
                if written.whole == 0 {
                    // Full: the session waits for the client.
                    break true;
                }
            },
            // The session writes (and is woken anyway, to be sure it looks).
            _ => true,
        };
        queue.shrink_if_drained();
        drop(queue);
        if wake_session {
            self.ready.notify_one();
        }
        sent
    }
}

impl Queue {
    fn push_back(&mut self, frame: Frame, sharers: usize) {
        let weight = weight(frame.len(), sharers);
        self.bytes += frame.len();
        self.frames.push_back(frame);
        self.weight += weight;
        if let Some(ledger) = &self.ledger {
            ledger.charge(weight);
        }
    }

    /// The next frame, still charged until it is written ([`Inbox::written`]).
    fn pop_front(&mut self) -> Option<Frame> {
        let frame = self.frames.pop_front()?;
        self.weight_taken += self.share_of(frame.len());
        Some(frame)
    }

    fn drop_front(&mut self, count: usize) {
        for _ in 0..count {
            let Some(frame) = self.frames.pop_front() else {
                break;
            };
            let share = self.share_of(frame.len());
            self.release(share);
        }
    }

    /// What a frame of `len` bytes that just left the queue takes of the
    /// queue's charge (and takes `len` off its bytes).
    fn share_of(&mut self, len: usize) -> usize {
        let queued = self.weight - self.weight_taken;
        let before = self.bytes;
        self.bytes -= len;
        if queued == before {
            // No frame shared: each is charged its own length.
            len
        } else if self.frames.is_empty() || before == 0 {
            // The last frame takes the rest.
            queued
        } else {
            // A socket's queue holds a few MiB at most: the product fits.
            queued.saturating_mul(len) / before
        }
    }

    fn clear(&mut self) {
        self.frames.clear();
        self.bytes = 0;
        self.weight_taken = 0;
        let weight = self.weight;
        self.release(weight);
    }

    /// What was taken is written: it is no longer charged.
    fn taken_written(&mut self) {
        let weight = std::mem::take(&mut self.weight_taken);
        self.release(weight);
    }

    /// Slots a burst left behind go once the queue is empty.
    fn shrink_if_drained(&mut self) {
        if self.frames.is_empty() && self.frames.capacity() > KEEP_SLOTS {
            self.frames = VecDeque::new();
        }
    }

    fn release(&mut self, weight: usize) {
        self.weight -= weight;
        if let Some(ledger) = &self.ledger {
            ledger.release(weight);
        }
    }
}

impl Inbox {
    pub(super) fn new(mailbox: Arc<Mailbox>) -> Self {
        Self { mailbox }
    }

    /// The next frame or flush, waiting for one. Always `Some`: the link
    /// that sends lives as long as the session (the `Option` fits `select!`
    /// patterns).
    pub async fn recv(&mut self) -> Option<Wake> {
        loop {
            {
                let mut queue = self.mailbox.lock();
                if let Some(frame) = Self::pop(&mut queue) {
                    return Some(Wake::Frame(frame));
                }
                if std::mem::take(&mut queue.flush_wanted) {
                    return Some(Wake::Flush);
                }
            }
            self.mailbox.ready.notified().await;
        }
    }

    /// The next frame if one is queued. Until [`Inbox::written`], the
    /// writer leaves the queue to the session.
    pub fn try_recv(&mut self) -> Option<Frame> {
        Self::pop(&mut self.mailbox.lock())
    }

    fn pop(queue: &mut Queue) -> Option<Frame> {
        let frame = queue.pop_front();
        if frame.is_some() {
            queue.taken = true;
        }
        queue.shrink_if_drained();
        frame
    }

    /// The frames taken so far are with the socket: the writer may write
    /// this socket's frames again.
    pub fn written(&mut self) {
        let mut queue = self.mailbox.lock();
        queue.taken = false;
        queue.taken_written();
    }
}

impl Drop for Inbox {
    fn drop(&mut self) {
        let mut queue = self.mailbox.lock();
        self.mailbox.receiver_gone.store(true, Ordering::Relaxed);
        queue.clear();
    }
}
