//! The frames a session writes to its client, framed here rather than by
//! tungstenite. tungstenite keeps its write buffer at the size of the largest
//! batch it ever wrote (about 74 KiB per connection after one burst of 10 KB
//! events, for as long as the connection lives); the outbox holds a batch
//! only until it is written and then lets the memory go, so an idle
//! connection costs no write buffer at all.
//!
//! The outbox holds the frames themselves (shared with every other
//! recipient), not a copy: a client that stops reading while a batch waits
//! for it costs its share of the batch's bookkeeping, not the batch's bytes
//! again. Headers are computed when written and payloads go out with one
//! vectored write.
//!
//! Server frames are never masked (RFC 6455 §5.1): a text frame is a 2, 4 or
//! 10-byte header and the payload. Reading, pings, pongs and the close
//! handshake stay with tungstenite; the session only writes here while
//! tungstenite has nothing buffered (it flushes after every pong it owes).
//!
//! Writing is cancel-safe: a write that is dropped (the client was
//! terminated, the server is shutting down) keeps its place, so what is left
//! of the batch can still go out before the close frame and the stream is
//! never cut mid-frame.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// The header of an unmasked, final text frame of `len` payload bytes: the
/// bytes, of which the first 2, 4 or 10 are used, and how many.
pub fn text_header(len: usize) -> ([u8; 10], usize) {
    let mut header = [0u8; 10];
    header[0] = 0x81; // FIN, opcode 1 (text)
    if len < 126 {
        header[1] = len as u8;
        (header, 2)
    } else if let Ok(len) = u16::try_from(len) {
        header[1] = 126;
        header[2..4].copy_from_slice(&len.to_be_bytes());
        (header, 4)
    } else {
        header[1] = 127;
        header[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        (header, 10)
    }
}

/// Why a batch could not be written.
#[derive(Debug)]
pub enum WriteError {
    /// The connection failed.
    Io(std::io::Error),
    /// Not one byte was accepted for this long: the client stopped reading.
    Stalled(Duration),
}

/// Frames one vectored write carries at most.
const FRAMES_PER_WRITE: usize = 32;

/// Frames waiting to be written, and how far the writing got.
#[derive(Debug, Default)]
pub struct Outbox {
    /// Payloads of the frames still to write, the first maybe in part.
    frames: VecDeque<Bytes>,
    /// Bytes of the first frame (its header, then its payload) written.
    front_written: usize,
}

impl Outbox {
    /// Appends `payload` as one unmasked, final text frame.
    pub fn push_text(&mut self, payload: impl Into<Bytes>) {
        self.frames.push_back(payload.into());
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Writes everything pushed so far and flushes, failing when no byte is
    /// accepted for `stall_limit`. The frames are let go once written.
    pub async fn write_to<W>(&mut self, io: &mut W, stall_limit: Duration) -> Result<(), WriteError>
    where
        W: AsyncWrite + Unpin,
    {
        while !self.is_empty() {
            let headers: Vec<([u8; 10], usize)> = self
                .frames
                .iter()
                .take(FRAMES_PER_WRITE)
                .map(|payload| text_header(payload.len()))
                .collect();
            let mut skip = self.front_written;
            let mut slices = Vec::with_capacity(2 * headers.len());
            for (payload, (header, len)) in self.frames.iter().zip(&headers) {
                for part in [&header[..*len], &payload[..]] {
                    let from = skip.min(part.len());
                    skip -= from;
                    if from < part.len() {
                        slices.push(IoSlice::new(&part[from..]));
                    }
                }
            }
            let n = match tokio::time::timeout(stall_limit, io.write_vectored(&slices)).await {
                Err(_) => return Err(WriteError::Stalled(stall_limit)),
                Ok(Err(error)) => return Err(WriteError::Io(error)),
                Ok(Ok(0)) => return Err(WriteError::Io(std::io::ErrorKind::WriteZero.into())),
                Ok(Ok(n)) => n,
            };
            drop(slices);
            self.advance(n, &headers);
        }
        self.frames = VecDeque::new();
        match tokio::time::timeout(stall_limit, io.flush()).await {
            Err(_) => Err(WriteError::Stalled(stall_limit)),
            Ok(result) => result.map_err(WriteError::Io),
        }
    }

    /// Moves past `n` written bytes: whole frames go, a cut one is marked.
    fn advance(&mut self, mut n: usize, headers: &[([u8; 10], usize)]) {
        for (_, header_len) in headers {
            let Some(payload) = self.frames.front() else {
                return;
            };
            let left = header_len + payload.len() - self.front_written;
            if n < left {
                self.front_written += n;
                return;
            }
            n -= left;
            self.frames.pop_front();
            self.front_written = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

    /// What tungstenite itself writes for the same text message.
    fn tungstenite_bytes(payload: &[u8]) -> Vec<u8> {
        let frame = Frame::message(payload.to_vec(), OpCode::Data(Data::Text), true);
        let mut out = Vec::new();
        frame.format(&mut out).unwrap();
        out
    }

    #[tokio::test]
    async fn frames_are_the_bytes_tungstenite_would_write_at_every_length_boundary() {
        for len in [0, 1, 125, 126, 127, 65_535, 65_536, 100_000] {
            let payload = vec![b'x'; len];
            let mut outbox = Outbox::default();
            outbox.push_text(payload.clone());
            let mut written = Vec::new();
            outbox
                .write_to(&mut written, Duration::from_secs(1))
                .await
                .unwrap();
            assert_eq!(written, tungstenite_bytes(&payload), "length {len}");
        }
    }

    #[tokio::test]
    async fn a_batch_is_written_whole_and_the_buffer_released() {
        let mut outbox = Outbox::default();
        outbox.push_text(&b"{\"event\":\"a\"}"[..]);
        outbox.push_text(vec![b'y'; 300]);
        let expected = [
            tungstenite_bytes(b"{\"event\":\"a\"}"),
            tungstenite_bytes(&[b'y'; 300]),
        ]
        .concat();
        let mut written = Vec::new();
        outbox
            .write_to(&mut written, Duration::from_secs(1))
            .await
            .unwrap();
        assert_eq!(written, expected);
        assert!(outbox.is_empty());
        assert_eq!(outbox.frames.capacity(), 0, "nothing kept once written");
    }

    #[tokio::test]
    async fn frames_cut_anywhere_by_a_narrow_pipe_arrive_whole_and_in_order() {
        let (mut writer, mut reader) = tokio::io::duplex(7);
        let payloads = [vec![b'a'; 3], vec![b'b'; 200], vec![b'c'; 70_000], vec![]];
        let expected: Vec<u8> = payloads.iter().flat_map(|p| tungstenite_bytes(p)).collect();
        let read = tokio::spawn(async move {
            let mut all = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut reader, &mut all)
                .await
                .unwrap();
            all
        });
        let mut outbox = Outbox::default();
        for payload in payloads {
            outbox.push_text(payload);
        }
        outbox
            .write_to(&mut writer, Duration::from_secs(5))
            .await
            .unwrap();
        drop(writer);
        assert!(read.await.unwrap() == expected, "every byte, in order");
    }

    #[tokio::test]
    async fn a_reader_that_never_reads_is_reported_as_stalled_and_the_rest_kept() {
        let (mut writer, _reader) = tokio::io::duplex(64);
        let mut outbox = Outbox::default();
        outbox.push_text(vec![b'z'; 1000]);
        let result = outbox
            .write_to(&mut writer, Duration::from_millis(50))
            .await;
        assert!(matches!(result, Err(WriteError::Stalled(_))), "{result:?}");
        assert!(!outbox.is_empty(), "what was not written is kept");
        assert_eq!(
            outbox.front_written, 64,
            "the part the pipe took is remembered"
        );
    }
}
