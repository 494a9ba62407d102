//! A socket's mailbox: the bounded queue the hub writes frames into and
//! that is drained onto the wire, by the session task or by a writer.
//!
//! The hub never waits on a socket. When a socket's queue is full the client
//! is not reading fast enough; it is asked to close with 4100 (over capacity,
//! pusher-js backs off and reconnects) instead of letting memory grow or
//! stalling the fan-out for everyone else.
//!
//! A plain connection's link is *wired*: its frames are written by one of a
//! few writer tasks ([`super::writer`]), each serving many sockets, straight
//! to the socket through its [`DirectWire`], so no session task wakes for a
//! delivery. The writer flushes whatever a socket has queued in one write;
//! under load it runs behind the fan-out, so several frames go out together.
//! When the socket does not take everything, the rest stays queued and the
//! session writes it, waiting for the client as it always did. Writer and
//! session never write the same socket at once: the writer leaves a queue
//! alone while the session holds frames it took from it.
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
use super::writer::WriterHandle;
use crate::protocol::{SocketId, close_code};

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

/// The hub's handle on one connection.
#[derive(Debug)]
pub struct SocketLink {
    pub id: SocketId,
    mailbox: Arc<Mailbox>,
    /// Set for plain connections: the writer that puts frames on the wire.
    writer: Option<WriterHandle>,
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

impl SocketLink {
    /// A new link and the inbox its session drains.
    pub fn new(id: SocketId, capacity: usize) -> (Self, Inbox) {
        Self::build(id, capacity, None, None)
    }

    /// A new link whose frames `writer` writes to `wire` while the session
    /// is not writing, and whose queued bytes are charged to `ledger`.
    pub fn wired(
        id: SocketId,
        capacity: usize,
        wire: Arc<dyn DirectWire>,
        writer: WriterHandle,
        ledger: Option<Arc<AddressLedger>>,
    ) -> (Self, Inbox) {
        Self::build(id, capacity, Some((wire, writer)), ledger)
    }

    /// A new link (written by its session only) whose queued bytes are
    /// charged to `ledger`.
    pub fn charged(id: SocketId, capacity: usize, ledger: Arc<AddressLedger>) -> (Self, Inbox) {
        Self::build(id, capacity, None, Some(ledger))
    }

    fn build(
        id: SocketId,
        capacity: usize,
        wired: Option<(Arc<dyn DirectWire>, WriterHandle)>,
        ledger: Option<Arc<AddressLedger>>,
    ) -> (Self, Inbox) {
        let (wire, writer) = wired.unzip();
        let mailbox = Arc::new(Mailbox {
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
        });
        let link = Self {
            id,
            mailbox: mailbox.clone(),
            writer,
        };
        (link, Inbox { mailbox })
    }

    /// Queues a frame for this socket alone; returns false when the socket
    /// is gone or was evicted.
    pub fn send(&self, frame: Frame) -> bool {
        self.send_shared(frame, 1)
    }

    /// Queues a frame that is queued to `sharers` sockets in all (its
    /// weight on the address's budget is its share).
    pub fn send_shared(&self, frame: Frame, sharers: usize) -> bool {
        let mailbox = &self.mailbox;
        if mailbox.close_code.load(Ordering::Relaxed) != 0 {
            return false;
        }
        let first_staged = {
            let mut queue = mailbox.lock();
            // Checked under the lock: once the session has let go of its
            // inbox, nothing more reaches the socket.
            if mailbox.receiver_gone.load(Ordering::Relaxed) {
                return false;
            }
            let over_budget =
                !queue.frames.is_empty() && queue.bytes + frame.len() > MAX_QUEUED_BYTES;
            if queue.frames.len() >= mailbox.capacity || over_budget {
                drop(queue);
                mailbox.request_close(close_code::OVER_CAPACITY);
                return false;
            }
            queue.push_back(frame, sharers);
            !std::mem::replace(&mut queue.staged, true)
        };
        match &self.writer {
            Some(writer) if first_staged => writer.push(mailbox.clone()),
            Some(_) => {}
            None => mailbox.ready.notify_one(),
        }
        true
    }

    /// The client address this socket's queue is charged to, and what it
    /// holds queued, weighed; `None` for a socket with no ledger or one
    /// already asked to close (what it holds is let go as it ends).
    pub fn holding(&self) -> Option<(std::net::IpAddr, usize)> {
        if self.mailbox.close_code.load(Ordering::Relaxed) != 0 {
            return None;
        }
        let queue = self.mailbox.lock();
        let ledger = queue.ledger.as_ref()?;
        Some((ledger.ip, queue.weight))
    }

    /// Asks the session to close with `code`; the first request wins.
    pub fn request_close(&self, code: u16) {
        self.mailbox.request_close(code);
    }

    /// Asks the session to drop the connection, recorded as `code`, without
    /// a goodbye: the client holds the most unsent data and is not reading,
    /// so what the session and the wire still hold for it (a batch, the
    /// rest of a frame) goes at once rather than after the close timeout.
    pub fn request_drop(&self, code: u16) {
        self.mailbox.abandon.store(true, Ordering::Release);
        self.mailbox.request_close(code);
    }

    /// Whether the close asked for is a drop ([`SocketLink::request_drop`]).
    pub fn drop_requested(&self) -> bool {
        self.mailbox.abandon.load(Ordering::Acquire)
    }

    /// Resolves with the requested close code once somebody asks for one.
    pub async fn close_requested(&self) -> u16 {
        loop {
            let code = self.mailbox.close_code.load(Ordering::Acquire);
            if code != 0 {
                return code;
            }
            self.mailbox.close_wake.notified().await;
        }
    }
}

impl Mailbox {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn request_close(&self, code: u16) {
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
        if self.frames.is_empty() || before == 0 {
            queued
        } else {
            (queued as u128 * len as u128 / before as u128) as usize
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

#[cfg(test)]
mod tests {
    use super::*;

    fn frame_of(wake: Option<Wake>) -> String {
        match wake {
            Some(Wake::Frame(frame)) => frame.to_string(),
            other => panic!("expected a frame, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_queue_over_its_byte_budget_asks_to_close_with_4100() {
        let (link, mut inbox) = SocketLink::new(SocketId::random(), 512);
        let big = Frame::from("x".repeat(MAX_QUEUED_BYTES + 1));
        assert!(
            link.send(big.clone()),
            "one frame over the budget, alone, is queued"
        );
        assert_eq!(frame_of(inbox.recv().await).len(), big.len());
        let quarter = Frame::from("y".repeat(MAX_QUEUED_BYTES / 4));
        for _ in 0..4 {
            assert!(link.send(quarter.clone()));
        }
        assert!(!link.send(Frame::from("z")), "the budget is full");
        assert_eq!(link.close_requested().await, close_code::OVER_CAPACITY);
    }

    /// Frames shared by different numbers of sockets leave the queue by
    /// their bytes' share of its charge: the address's ledger holds what
    /// waits, never less than nothing, and is empty once all is written.
    #[tokio::test]
    async fn a_queue_gives_back_to_its_ledger_what_it_was_charged() {
        let budget = Arc::new(super::super::budget::QueueBudget::new(1 << 30, 1 << 30));
        let ledger = budget.ledger("192.0.2.1".parse().unwrap());
        let (link, mut inbox) = SocketLink::charged(SocketId::random(), 64, ledger.clone());
        assert!(link.send_shared(Frame::from("a".repeat(1000)), 4));
        assert!(link.send_shared(Frame::from("b".repeat(300)), 1));
        assert!(link.send_shared(Frame::from("c".repeat(999)), 3));
        assert_eq!(ledger.queued(), 250 + 300 + 333);
        assert_eq!(frame_of(inbox.recv().await).len(), 1000);
        assert_eq!(ledger.queued(), 250 + 300 + 333, "taken, not yet written");
        inbox.written();
        assert!(ledger.queued() < 250 + 300 + 333);
        assert_eq!(inbox.try_recv().map(|f| f.len()), Some(300));
        assert_eq!(inbox.try_recv().map(|f| f.len()), Some(999));
        inbox.written();
        assert_eq!(ledger.queued(), 0);
        assert_eq!(budget.total(), 0);
    }

    #[tokio::test]
    async fn frames_arrive_in_order_and_a_full_queue_asks_to_close_with_4100() {
        let (link, mut inbox) = SocketLink::new(SocketId::random(), 3);
        for n in 0..3 {
            assert!(link.send(Frame::from(n.to_string())));
        }
        assert!(!link.send(Frame::from("overflow")), "a full queue refuses");
        assert_eq!(link.close_requested().await, close_code::OVER_CAPACITY);
        for n in 0..3 {
            assert_eq!(frame_of(inbox.recv().await), n.to_string());
        }
        assert!(inbox.try_recv().is_none());
    }

    #[tokio::test]
    async fn a_waiting_session_wakes_for_a_frame_sent_later() {
        let (link, mut inbox) = SocketLink::new(SocketId::random(), 8);
        let link = Arc::new(link);
        let sender = link.clone();
        let waiter = tokio::spawn(async move { inbox.recv().await });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(sender.send(Frame::from("late")));
        assert_eq!(frame_of(waiter.await.unwrap()), "late");
    }

    #[test]
    fn a_drained_queue_gives_back_what_a_burst_took_and_a_gone_session_takes_nothing() {
        let (link, mut inbox) = SocketLink::new(SocketId::random(), 512);
        for n in 0..300 {
            assert!(link.send(Frame::from(n.to_string())));
        }
        assert!(link.mailbox.lock().frames.capacity() >= 300);
        while inbox.try_recv().is_some() {}
        assert_eq!(
            link.mailbox.lock().frames.capacity(),
            0,
            "the burst's memory is freed"
        );
        drop(inbox);
        assert!(!link.send(Frame::from("after")), "nobody reads any more");
    }

    /// Takes frames as told and records them. The byte-level behaviour of
    /// the real wire is tested in `server::websocket::wire`.
    #[derive(Debug, Default)]
    struct Recorder {
        /// How many frames it takes per write (`None`: all of them).
        takes: Mutex<Option<usize>>,
        /// Whether the last frame it takes is only started.
        cuts: AtomicBool,
        written: Mutex<Vec<String>>,
    }

    impl DirectWire for Recorder {
        fn try_write_texts(&self, frames: &VecDeque<Frame>) -> Written {
            let takes = self.takes.lock().unwrap().unwrap_or(frames.len());
            let taken: Vec<String> = frames.iter().take(takes).map(|f| f.to_string()).collect();
            let cut = self.cuts.load(Ordering::Relaxed) && !taken.is_empty();
            let whole = taken.len() - usize::from(cut);
            self.written.lock().unwrap().extend(taken);
            Written {
                whole,
                started: cut,
                bytes: 0,
            }
        }
    }

    fn wired() -> (SocketLink, Inbox, Arc<Recorder>) {
        let wire = Arc::new(Recorder::default());
        let writers = crate::hub::Writers::with_count(1, Default::default());
        let (link, inbox) =
            SocketLink::wired(SocketId::random(), 8, wire.clone(), writers.assign(), None);
        (link, inbox, wire)
    }

    async fn written_by_the_writer(wire: &Recorder, expected: &[&str]) {
        for _ in 0..200 {
            if *wire.written.lock().unwrap() == expected {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert_eq!(*wire.written.lock().unwrap(), expected);
    }

    #[tokio::test]
    async fn the_writer_writes_a_wired_socket_and_leaves_it_while_the_session_writes() {
        let (link, mut inbox, wire) = wired();
        assert!(link.send(Frame::from("a")));
        assert!(link.send(Frame::from("b")));
        written_by_the_writer(&wire, &["a", "b"]).await;
        assert!(inbox.try_recv().is_none(), "nothing left for the session");

        // The socket is full: the session is woken for what is left, and the
        // writer leaves the queue alone until the session has written it.
        *wire.takes.lock().unwrap() = Some(0);
        assert!(link.send(Frame::from("c")));
        assert_eq!(frame_of(inbox.recv().await), "c");
        *wire.takes.lock().unwrap() = None;
        assert!(link.send(Frame::from("d")));
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
        assert_eq!(*wire.written.lock().unwrap(), ["a", "b"]);
        assert_eq!(frame_of(inbox.recv().await), "d", "the session takes it");
        inbox.written();
        assert!(link.send(Frame::from("e")));
        written_by_the_writer(&wire, &["a", "b", "e"]).await;
    }

    #[tokio::test]
    async fn a_frame_cut_in_two_wakes_the_session_to_flush_and_a_closed_one_gets_nothing() {
        let (link, mut inbox, wire) = wired();
        wire.cuts.store(true, Ordering::Relaxed);
        assert!(link.send(Frame::from("big")));
        written_by_the_writer(&wire, &["big"]).await;
        assert!(matches!(inbox.recv().await, Some(Wake::Flush)));
        wire.cuts.store(false, Ordering::Relaxed);
        drop(inbox);
        assert!(!link.send(Frame::from("after")));
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
        assert_eq!(*wire.written.lock().unwrap(), ["big"]);
    }
}
