//! The hub's handle on one socket: it queues frames into the socket's
//! mailbox, to be drained onto the wire by the session task or by a writer.
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
//! The queue itself, and the session's end of it, are `super::mailbox`'s.

use std::sync::Arc;

use super::budget::AddressLedger;
use super::mailbox::{DirectWire, Frame, Inbox, Mailbox};
use super::writer::WriterHandle;
use crate::protocol::SocketId;

/// The hub's handle on one connection.
#[derive(Debug)]
pub struct SocketLink {
    pub id: SocketId,
    mailbox: Arc<Mailbox>,
    /// Set for plain connections: the writer that puts frames on the wire.
    writer: Option<WriterHandle>,
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
        let mailbox = Arc::new(Mailbox::new(capacity, wire, ledger));
        let link = Self {
            id,
            mailbox: mailbox.clone(),
            writer,
        };
        (link, Inbox::new(mailbox))
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
        let Some(first_staged) = mailbox.queue_frame(frame, sharers) else {
            return false;
        };
        match &self.writer {
            Some(writer) if first_staged => writer.push(mailbox.clone()),
            Some(_) => {}
            None => mailbox.wake_session(),
        }
        true
    }

    /// The client address this socket's queue is charged to, and what it
    /// holds queued, weighed; `None` for a socket with no ledger or one
    /// already asked to close (what it holds is let go as it ends).
    pub fn holding(&self) -> Option<(std::net::IpAddr, usize)> {
        self.mailbox.holding()
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
        self.mailbox.request_drop(code);
    }

    /// Whether the close asked for is a drop ([`SocketLink::request_drop`]).
    pub fn drop_requested(&self) -> bool {
        self.mailbox.drop_requested()
    }

    /// Resolves with the requested close code once somebody asks for one.
    pub async fn close_requested(&self) -> u16 {
        self.mailbox.close_requested().await
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::super::mailbox::{MAX_QUEUED_BYTES, Wake, Written};
    use super::*;
    use crate::protocol::close_code;

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
        assert!(link.mailbox.slots() >= 300);
        while inbox.try_recv().is_some() {}
        assert_eq!(link.mailbox.slots(), 0, "the burst's memory is freed");
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
