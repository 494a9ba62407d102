//! A socket's mailbox: the bounded queue the hub writes frames into and the
//! session task drains onto the wire.
//!
//! The hub never waits on a socket. When a socket's queue is full the client
//! is not reading fast enough; it is asked to close with 4100 (over capacity,
//! pusher-js backs off and reconnects) instead of letting memory grow or
//! stalling the fan-out for everyone else.

use std::sync::atomic::{AtomicU16, Ordering};

use tokio::sync::{Notify, mpsc};
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::protocol::{SocketId, close_code};

/// A serialized frame, shared by every recipient without copying.
pub type Frame = Utf8Bytes;

/// The hub's handle on one connection.
#[derive(Debug)]
pub struct SocketLink {
    pub id: SocketId,
    queue: mpsc::Sender<Frame>,
    /// The close code someone asked for; 0 while nobody has.
    close_code: AtomicU16,
    /// Wakes the session when a close is requested.
    close_wake: Notify,
}

impl SocketLink {
    /// A new link and the receiving end its session drains.
    pub fn new(id: SocketId, capacity: usize) -> (Self, mpsc::Receiver<Frame>) {
        let (queue, receiver) = mpsc::channel(capacity.max(1));
        let link = Self {
            id,
            queue,
            close_code: AtomicU16::new(0),
            close_wake: Notify::new(),
        };
        (link, receiver)
    }

    /// Queues a frame; returns false when the socket is gone or was evicted.
    pub fn send(&self, frame: Frame) -> bool {
        if self.close_code.load(Ordering::Relaxed) != 0 {
            return false;
        }
        match self.queue.try_send(frame) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.request_close(close_code::OVER_CAPACITY);
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
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
