//! Every client frame is paced, not only client events: a connection's
//! reading pauses once it has sent more than a burst of frames or bytes
//! and resumes at a steady rate. Pings, empty continuation frames and pongs
//! cost the server work without being events, so they count too; they are
//! counted here, on the raw bytes, before tungstenite spends any work on
//! them. A paused connection is not read: TCP's own flow control makes the
//! client wait, and nothing is refused or closed, so an honest tab that
//! sends a burst (resubscribing to every channel after a reconnect) is only
//! slowed, never cut.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::server::context::ServerContext;
use crate::throttle::Throttle;

/// Frames a connection may send at once: a tab resubscribing to the
/// largest allowed number of channels after a reconnect fits.
pub const FRAME_BURST: u32 = 2_000;
/// Frames a second after the burst: far above what pusher-js sends (a
/// ping per `activity_timeout`, client events at their own limit).
pub const FRAMES_PER_SECOND: u32 = 100;
/// Bytes a connection may send at once.
pub const BYTE_BURST: u32 = 512 * 1024;
/// Bytes a second after the burst.
pub const BYTES_PER_SECOND: u32 = 128 * 1024;

/// A budget that may run into debt: what was read is charged after the
/// read, and the connection waits until the debt is paid.
#[derive(Debug, Clone, Copy)]
struct Budget {
    tokens: f32,
}

impl Budget {
    fn full(burst: u32) -> Self {
        Self {
            tokens: burst as f32,
        }
    }

    fn refill(&mut self, elapsed: Duration, burst: u32, per_second: u32) {
        self.tokens = (self.tokens + elapsed.as_secs_f32() * per_second as f32).min(burst as f32);
    }

    /// How long until the budget is out of debt.
    fn wait(&self, per_second: u32) -> Duration {
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f32(-self.tokens / per_second as f32)
        }
    }
}

/// Counts the websocket frames that start in a byte stream from a client,
/// from their headers (RFC 6455 section 5.2), without keeping any of it.
#[derive(Debug, Clone, Copy, Default)]
struct FrameCounter {
    /// Payload bytes of the current frame still to come.
    payload_left: u64,
    /// Header bytes read of the next frame (0 while in a payload).
    header_read: u8,
    /// The header's length once its second byte is known.
    header_len: u8,
    /// The payload length as read so far from the header.
    length: u64,
}

impl FrameCounter {
    /// Reads `data` on from where the last call stopped; returns the frames
    /// whose header ended in it.
    fn feed(&mut self, mut data: &[u8]) -> u32 {
        let mut frames = 0;
        while !data.is_empty() {
            if self.payload_left > 0 {
                let skip = self.payload_left.min(data.len() as u64);
                self.payload_left -= skip;
                data = &data[skip as usize..];
                continue;
            }
            let byte = data[0];
            data = &data[1..];
            match self.header_read {
                0 => self.length = 0,
                1 => {
                    let masked = byte & 0x80 != 0;
                    let short = u64::from(byte & 0x7f);
                    let extended = match short {
                        126 => 2,
                        127 => 8,
                        _ => 0,
                    };
                    self.length = if extended == 0 { short } else { 0 };
                    self.header_len = 2 + extended + if masked { 4 } else { 0 };
                }
                // The extended length, big-endian (any mask bytes follow
                // it and do not add to it).
                n if n < self.header_len - self.mask_len() => {
                    self.length = (self.length << 8) | u64::from(byte);
                }
                _ => {}
            }
            self.header_read += 1;
            if self.header_read >= 2 && self.header_read == self.header_len {
                frames += 1;
                self.header_read = 0;
                self.payload_left = self.length;
            }
        }
        frames
    }

    fn mask_len(&self) -> u8 {
        // Two fixed bytes, then 0, 2 or 8 length bytes, then 4 mask bytes
        // when masked: a header of 6, 8 or 14 bytes is masked.
        if matches!(self.header_len, 6 | 8 | 14) {
            4
        } else {
            0
        }
    }
}

/// Pauses are logged at most once a minute: a client can cause them at will.
static PAUSE_LINES: Throttle = Throttle::new(Duration::from_secs(60));

/// Who hears of a pause.
pub trait OnPause {
    fn paused(&self, wait: Duration);
}

impl OnPause for Arc<ServerContext> {
    fn paused(&self, wait: Duration) {
        self.telemetry.refused("frames_throttled");
        if let Some(held_back) = PAUSE_LINES.ready() {
            tracing::info!(
                "Pausing a connection's reading for {wait:?}: it sent more than {FRAME_BURST} frames or {BYTE_BURST} bytes at once, or more than {FRAMES_PER_SECOND} frames or {BYTES_PER_SECOND} bytes a second ({held_back} more pauses since the last such line)"
            );
        }
    }
}

/// A client's stream whose reading is paced. Writes pass through.
pub struct Paced<S, R = Arc<ServerContext>> {
    inner: S,
    /// Told of each pause (a metric, a log line).
    report: R,
    frames: Budget,
    bytes: Budget,
    counter: FrameCounter,
    refilled: Instant,
    /// Set while the connection waits for its budget (boxed: most
    /// connections never wait, and hold no timer).
    pause: Option<Pin<Box<Sleep>>>,
}

impl<S, R: OnPause> Paced<S, R> {
    pub fn new(inner: S, report: R) -> Self {
        Self {
            inner,
            report,
            frames: Budget::full(FRAME_BURST),
            bytes: Budget::full(BYTE_BURST),
            counter: FrameCounter::default(),
            refilled: Instant::now(),
            pause: None,
        }
    }

    fn charge(&mut self, data: &[u8]) {
        let now = Instant::now();
        let elapsed = now.duration_since(self.refilled);
        self.refilled = now;
        self.frames.refill(elapsed, FRAME_BURST, FRAMES_PER_SECOND);
        self.bytes.refill(elapsed, BYTE_BURST, BYTES_PER_SECOND);
        self.frames.tokens -= self.counter.feed(data) as f32;
        self.bytes.tokens -= data.len() as f32;
        let wait = self
            .frames
            .wait(FRAMES_PER_SECOND)
            .max(self.bytes.wait(BYTES_PER_SECOND));
        if !wait.is_zero() {
            self.report.paused(wait);
            self.pause = Some(Box::pin(tokio::time::sleep_until(now + wait)));
        }
    }
}

impl<S: AsyncRead + Unpin, R: OnPause + Unpin> AsyncRead for Paced<S, R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if let Some(pause) = &mut this.pause {
            ready!(pause.as_mut().poll(cx));
            this.pause = None;
        }
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        let read = &buf.filled()[before..];
        if !read.is_empty() {
            // The bytes are handed on now; the next read waits if they
            // overdrew the budget.
            this.charge(read);
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin, R: Unpin> AsyncWrite for Paced<S, R> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked client frame with `payload` bytes, as browsers send.
    fn frame(payload: usize) -> Vec<u8> {
        let mut out = vec![0x81];
        match payload {
            0..=125 => out.push(0x80 | payload as u8),
            126..=65535 => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(payload as u16).to_be_bytes());
            }
            _ => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(payload as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&[1, 2, 3, 4]);
        out.extend(std::iter::repeat_n(b'x', payload));
        out
    }

    /// Counts the pauses.
    #[derive(Default)]
    struct Pauses(std::sync::atomic::AtomicU32);

    impl OnPause for Arc<Pauses> {
        fn paused(&self, _: Duration) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    #[test]
    fn frames_are_counted_from_their_headers_however_the_bytes_arrive() {
        let mut stream = Vec::new();
        for size in [0, 5, 125, 126, 300, 70_000, 0, 0] {
            stream.extend(frame(size));
        }
        let mut whole = FrameCounter::default();
        assert_eq!(whole.feed(&stream), 8);
        // One byte at a time: the same count, and nothing in between.
        let mut bytewise = FrameCounter::default();
        let counted: u32 = stream.chunks(1).map(|b| bytewise.feed(b)).sum();
        assert_eq!(counted, 8);
        let mut split = FrameCounter::default();
        let counted: u32 = stream.chunks(7).map(|b| split.feed(b)).sum();
        assert_eq!(counted, 8);
        // An unmasked header (never from a browser) is read all the same.
        let mut plain = FrameCounter::default();
        assert_eq!(plain.feed(&[0x89, 0x02, b'h', b'i', 0x8a, 0x00]), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn reading_pauses_past_the_burst_and_resumes_at_the_rate() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut client, server) = tokio::io::duplex(1 << 20);
        let pauses = Arc::new(Pauses::default());
        let mut paced = Paced::new(server, pauses.clone());
        let empty = frame(0);
        let burst: Vec<u8> = (0..FRAME_BURST + 50).flat_map(|_| empty.clone()).collect();
        client.write_all(&burst).await.unwrap();
        let mut buffer = vec![0; burst.len()];
        paced.read_exact(&mut buffer).await.unwrap();
        assert_eq!(
            pauses.0.load(std::sync::atomic::Ordering::Relaxed),
            1,
            "the burst overdrew the budget once"
        );
        // The next read waits for 50 frames' worth of time at the rate.
        client.write_all(&empty).await.unwrap();
        let started = Instant::now();
        let mut one = vec![0; empty.len()];
        paced.read_exact(&mut one).await.unwrap();
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(490) && waited <= Duration::from_millis(600),
            "{waited:?}"
        );
    }
}
