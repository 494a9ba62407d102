//! A plain TCP connection that the hub's writers may write to directly.
//!
//! At a moderate event rate most of the user-space cost of a delivery was
//! waking the recipient's session task to write one frame (bench/PROFILE.md).
//! The hub's writer tasks (`hub::writer`) now write a socket's queued frames
//! here themselves, one vectored `sendmsg` for all of them, and no session
//! wakes. What the kernel does not take stays queued for the session, which
//! waits for the client as before, so a slow client still fills only its own
//! bounded queue.
//!
//! Frames must never interleave on the wire. Every write (the hub's direct
//! ones, the session's batches, tungstenite's pongs and close frames,
//! hyper's handshake answer) goes through one lock here and is taken whole:
//! what the kernel does not accept at once is kept in `tail` and written
//! before anything else. A direct write is only tried while `tail` is
//! empty, so the kernel only ever holds whole frames plus the start of the
//! one whose rest is in `tail`. Direct writes go to the socket itself
//! (socket2), not through tokio's readiness: a full socket answers "would
//! block", and the session's next write learns it from the kernel too.
//!
//! TLS connections are not wired: each TLS session encrypts its own copy,
//! and rustls' state belongs to the session task.

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, ready};

use smallvec::SmallVec;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use super::outbox::text_header;
use crate::hub::{DirectWire, Frame, Written};

/// The write side of a plain connection, shared by the hub and the session.
pub struct Wire {
    /// Lock 3 of the contract in `hub/mod.rs` (under a mailbox's lock).
    write: Mutex<WriteSide>,
}

struct WriteSide {
    half: OwnedWriteHalf,
    /// Bytes taken from a writer that the kernel has not accepted yet.
    tail: Vec<u8>,
    /// How much of `tail` has been written since.
    tail_written: usize,
}

/// The connection as hyper and tungstenite see it: reads from the socket,
/// writes through the [`Wire`].
pub struct WireStream {
    read: OwnedReadHalf,
    wire: Arc<Wire>,
}

impl Wire {
    /// Splits `stream` into the stream to serve and the wire to share.
    pub fn new(stream: TcpStream) -> (WireStream, Arc<Wire>) {
        let (read, half) = stream.into_split();
        let wire = Arc::new(Wire {
            write: Mutex::new(WriteSide {
                half,
                tail: Vec::new(),
                tail_written: 0,
            }),
        });
        (
            WireStream {
                read,
                wire: wire.clone(),
            },
            wire,
        )
    }

    fn lock(&self) -> MutexGuard<'_, WriteSide> {
        self.write.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl fmt::Debug for Wire {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Wire").finish_non_exhaustive()
    }
}

/// Frames one direct write carries at most.
const MAX_FRAMES_PER_WRITE: usize = 64;

impl DirectWire for Wire {
    fn try_write_texts(&self, frames: &VecDeque<Frame>) -> Written {
        let mut side = self.lock();
        if side.has_tail() {
            return Written::default();
        }
        // Most flushes carry one frame; a burst up to MAX_FRAMES_PER_WRITE.
        let frames: SmallVec<[&[u8]; 4]> = frames
            .iter()
            .take(MAX_FRAMES_PER_WRITE)
            .map(|frame| frame.as_bytes())
            .collect();
        let headers: SmallVec<[([u8; 10], usize); 4]> =
            frames.iter().map(|f| text_header(f.len())).collect();
        let slices: SmallVec<[IoSlice<'_>; 8]> = frames
            .iter()
            .zip(&headers)
            .flat_map(|(payload, (header, len))| {
                [IoSlice::new(&header[..*len]), IoSlice::new(payload)]
            })
            .collect();
        // Full, or failed: the session's own write meets the same state and
        // deals with it (waits, or ends the session).
        // Straight to the socket rather than through tokio's readiness
        // (one memory access fewer on a cold connection): a socket that is
        // full answers "would block" here, and the session's own write then
        // learns it and waits as usual.
        let socket = socket2::SockRef::from(side.half.as_ref());
        let Ok(mut left) = socket.send_vectored(&slices) else {
            return Written::default();
        };
        let mut written = Written::default();
        for (payload, (_, header_len)) in frames.iter().zip(&headers) {
            let size = header_len + payload.len();
            if left == 0 {
                break;
            }
            written.bytes += payload.len() as u64;
            if left >= size {
                left -= size;
                written.whole += 1;
                continue;
            }
            // Cut in two: the rest waits in the tail and goes first.
            let rest = slices[2 * written.whole..2 * written.whole + 2]
                .iter()
                .flat_map(|slice| slice.iter())
                .skip(left);
            side.tail.extend(rest);
            written.started = true;
            break;
        }
        written
    }
}

impl WriteSide {
    fn has_tail(&self) -> bool {
        self.tail_written < self.tail.len()
    }

    /// Writes what is left of `tail`; ready once it is all in the kernel.
    fn poll_write_tail(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.has_tail() {
            let pending = &self.tail[self.tail_written..];
            let written = ready!(Pin::new(&mut self.half).poll_write(cx, pending))?;
            if written == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.tail_written += written;
        }
        // Written: the memory goes too (a slow client's burst can be large).
        self.tail = Vec::new();
        self.tail_written = 0;
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for WireStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.read).poll_read(cx, buf)
    }
}

impl AsyncWrite for WireStream {
    /// Takes all of `buf` or none of it: what the kernel does not accept
    /// now waits in `tail`, so no frame is ever cut by another writer.
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut side = self.wire.lock();
        ready!(side.poll_write_tail(cx))?;
        match Pin::new(&mut side.half).poll_write(cx, buf) {
            Poll::Ready(Ok(written)) => {
                if written < buf.len() {
                    side.tail.extend_from_slice(&buf[written..]);
                }
                Poll::Ready(Ok(buf.len()))
            }
            other => other,
        }
    }

    /// The same for several buffers (a session's batch): all or none, the
    /// rest in `tail`. The session bounds a batch in bytes, and so the tail.
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let mut side = self.wire.lock();
        ready!(side.poll_write_tail(cx))?;
        let total = bufs.iter().map(|b| b.len()).sum();
        match Pin::new(&mut side.half).poll_write_vectored(cx, bufs) {
            Poll::Ready(Ok(mut written)) => {
                for buf in bufs {
                    let skip = written.min(buf.len());
                    written -= skip;
                    side.tail.extend_from_slice(&buf[skip..]);
                }
                Poll::Ready(Ok(total))
            }
            other => other,
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.wire.lock().poll_write_tail(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut side = self.wire.lock();
        ready!(side.poll_write_tail(cx))?;
        Pin::new(&mut side.half).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    async fn pair() -> (WireStream, Arc<Wire>, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let (stream, wire) = Wire::new(server);
        (stream, wire, client)
    }

    fn frame(payload: &[u8]) -> Vec<u8> {
        let (header, len) = text_header(payload.len());
        [&header[..len], payload].concat()
    }

    fn queue(payloads: &[&[u8]]) -> VecDeque<Frame> {
        payloads
            .iter()
            .map(|p| Frame::try_from(p.to_vec()).unwrap())
            .collect()
    }

    #[tokio::test]
    async fn direct_writes_are_whole_frames_in_order_with_the_sessions() {
        let (mut stream, wire, mut client) = pair().await;
        stream.write_all(b"from the session").await.unwrap();
        let written = wire.try_write_texts(&queue(&[b"one", b"two"]));
        assert_eq!(
            written,
            Written {
                whole: 2,
                started: false,
                bytes: 6
            }
        );
        let expected = [
            b"from the session".as_slice(),
            &frame(b"one"),
            &frame(b"two"),
        ]
        .concat();
        let mut got = vec![0; expected.len()];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(got, expected);
    }

    #[tokio::test]
    async fn a_reader_that_stops_gets_whole_frames_and_the_rest_waits_its_turn() {
        let (mut stream, wire, mut client) = pair().await;
        let payload = vec![b'x'; 100_000];
        let one = queue(&[&payload]);
        // The kernel takes part of some frame, then nothing: the rest is
        // kept, and nothing else is written until it has gone.
        let mut sent = 0;
        loop {
            let written = wire.try_write_texts(&one);
            sent += written.whole + usize::from(written.started);
            if written.whole == 0 {
                break;
            }
        }
        assert_eq!(
            wire.try_write_texts(&queue(&[b"later"])).whole,
            0,
            "nothing jumps a frame cut in two, or a full socket"
        );
        let reader = tokio::spawn(async move {
            let mut all = Vec::new();
            client.read_to_end(&mut all).await.unwrap();
            all
        });
        stream.write_all(&frame(b"after")).await.unwrap();
        stream.shutdown().await.unwrap();
        drop(stream);
        drop(wire);
        let all = reader.await.unwrap();
        let mut expected: Vec<u8> = std::iter::repeat_n(frame(&payload), sent)
            .flatten()
            .collect();
        expected.extend(frame(b"after"));
        assert_eq!(all.len(), expected.len());
        assert!(all == expected, "the stream is whole frames, in order");
    }
}
