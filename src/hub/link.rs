//! A socket's mailbox: the bounded queue the hub writes frames into and the
//! session task drains onto the wire.
//!
//! The hub never waits on a socket. When a socket's queue is full the client
//! is not reading fast enough; it is asked to close with 4100 (over capacity,
//! pusher-js backs off and reconnects) instead of letting memory grow or
//! stalling the fan-out for everyone else.
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

use crate::protocol::{SocketId, close_code};

/// A serialized frame, shared by every recipient without copying.
pub type Frame = Utf8Bytes;

/// Slots a drained queue may keep; a larger one (left by a burst) is freed.
const KEEP_SLOTS: usize = 16;

/// The hub's handle on one connection.
#[derive(Debug)]
pub struct SocketLink {
    pub id: SocketId,
    mailbox: Arc<Mailbox>,
    /// The close code someone asked for; 0 while nobody has.
    close_code: AtomicU16,
    /// Wakes the session when a close is requested.
    close_wake: Notify,
}

#[derive(Debug)]
struct Mailbox {
    frames: Mutex<VecDeque<Frame>>,
    capacity: usize,
    /// Wakes the session when a frame arrives (a stored permit covers a
    /// frame sent between its check and its wait).
    ready: Notify,
    /// Set when the session's end is dropped: frames are no longer taken.
    receiver_gone: AtomicBool,
}

/// The session's end of the mailbox.
#[derive(Debug)]
pub struct Inbox {
    mailbox: Arc<Mailbox>,
}

impl SocketLink {
    /// A new link and the inbox its session drains.
    pub fn new(id: SocketId, capacity: usize) -> (Self, Inbox) {
        let mailbox = Arc::new(Mailbox {
            frames: Mutex::new(VecDeque::new()),
            capacity: capacity.max(1),
            ready: Notify::new(),
            receiver_gone: AtomicBool::new(false),
        });
        let link = Self {
            id,
            mailbox: mailbox.clone(),
            close_code: AtomicU16::new(0),
            close_wake: Notify::new(),
        };
        (link, Inbox { mailbox })
    }

    /// Queues a frame; returns false when the socket is gone or was evicted.
    pub fn send(&self, frame: Frame) -> bool {
        if self.close_code.load(Ordering::Relaxed) != 0
            || self.mailbox.receiver_gone.load(Ordering::Relaxed)
        {
            return false;
        }
        {
            let mut frames = self.mailbox.lock();
            if frames.len() >= self.mailbox.capacity {
                drop(frames);
                self.request_close(close_code::OVER_CAPACITY);
                return false;
            }
            frames.push_back(frame);
        }
        self.mailbox.ready.notify_one();
        true
    }

    /// Asks the session to close with `code`; the first request wins.
    pub fn request_close(&self, code: u16) {
        if self
            .close_code
            .compare_exchange(0, code, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.close_wake.notify_one();
        }
    }

    /// Resolves with the requested close code once somebody asks for one.
    pub async fn close_requested(&self) -> u16 {
        loop {
            let code = self.close_code.load(Ordering::Acquire);
            if code != 0 {
                return code;
            }
            self.close_wake.notified().await;
        }
    }
}

impl Mailbox {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Frame>> {
        self.frames.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Inbox {
    /// The next frame, waiting for one. Always `Some`: the link that sends
    /// lives as long as the session (the `Option` fits `select!` patterns).
    pub async fn recv(&mut self) -> Option<Frame> {
        loop {
            if let Some(frame) = self.try_recv() {
                return Some(frame);
            }
            self.mailbox.ready.notified().await;
        }
    }

    /// The next frame if one is queued.
    pub fn try_recv(&mut self) -> Option<Frame> {
        let mut frames = self.mailbox.lock();
        let frame = frames.pop_front();
        if frames.is_empty() && frames.capacity() > KEEP_SLOTS {
            *frames = VecDeque::new();
        }
        frame
    }
}

impl Drop for Inbox {
    fn drop(&mut self) {
        self.mailbox.receiver_gone.store(true, Ordering::Relaxed);
        self.mailbox.lock().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_arrive_in_order_and_a_full_queue_asks_to_close_with_4100() {
        let (link, mut inbox) = SocketLink::new(SocketId::random(), 3);
        for n in 0..3 {
            assert!(link.send(Frame::from(n.to_string())));
        }
        assert!(!link.send(Frame::from("overflow")), "a full queue refuses");
        assert_eq!(link.close_requested().await, close_code::OVER_CAPACITY);
        for n in 0..3 {
            assert_eq!(inbox.recv().await.unwrap(), n.to_string());
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
        assert_eq!(waiter.await.unwrap().unwrap(), "late");
    }

    #[test]
    fn a_drained_queue_gives_back_what_a_burst_took_and_a_gone_session_takes_nothing() {
        let (link, mut inbox) = SocketLink::new(SocketId::random(), 512);
        for n in 0..300 {
            assert!(link.send(Frame::from(n.to_string())));
        }
        assert!(link.mailbox.lock().capacity() >= 300);
        while inbox.try_recv().is_some() {}
        assert_eq!(
            link.mailbox.lock().capacity(),
            0,
            "the burst's memory is freed"
        );
        drop(inbox);
        assert!(!link.send(Frame::from("after")), "nobody reads any more");
    }
}
