//! The frames a session writes to its client, framed here rather than by
//! tungstenite. tungstenite keeps its write buffer at the size of the largest
//! batch it ever wrote (about 74 KiB per connection after one burst of 10 KB
//! events, for as long as the connection lives); the outbox holds a batch
//! only until it is written and then lets the memory go, so an idle
//! connection costs no write buffer at all.
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

use std::time::Duration;

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

/// Frames waiting to be written, and how far the writing got.
#[derive(Debug, Default)]
pub struct Outbox {
    bytes: Vec<u8>,
    written: usize,
}

impl Outbox {
    /// Appends `payload` as one unmasked, final text frame.
    pub fn push_text(&mut self, payload: &[u8]) {
        let (header, header_len) = text_header(payload.len());
        self.bytes.reserve(header_len + payload.len());
        self.bytes.extend_from_slice(&header[..header_len]);
        self.bytes.extend_from_slice(payload);
    }

    pub fn is_empty(&self) -> bool {
        self.written == self.bytes.len()
    }

    /// Writes everything pushed so far and flushes, failing when no byte is
    /// accepted for `stall_limit`. The buffer is released once written.
    pub async fn write_to<W>(&mut self, io: &mut W, stall_limit: Duration) -> Result<(), WriteError>
    where
        W: AsyncWrite + Unpin,
    {
        while !self.is_empty() {
            let pending = &self.bytes[self.written..];
            let n = match tokio::time::timeout(stall_limit, io.write(pending)).await {
                Err(_) => return Err(WriteError::Stalled(stall_limit)),
                Ok(Err(error)) => return Err(WriteError::Io(error)),
                Ok(Ok(0)) => return Err(WriteError::Io(std::io::ErrorKind::WriteZero.into())),
                Ok(Ok(n)) => n,
            };
            self.written += n;
        }
        self.bytes = Vec::new();
        self.written = 0;
        match tokio::time::timeout(stall_limit, io.flush()).await {
            Err(_) => Err(WriteError::Stalled(stall_limit)),
            Ok(result) => result.map_err(WriteError::Io),
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

    #[test]
    fn frames_are_the_bytes_tungstenite_would_write_at_every_length_boundary() {
        for len in [0, 1, 125, 126, 127, 65_535, 65_536, 100_000] {
            let payload = vec![b'x'; len];
            let mut outbox = Outbox::default();
            outbox.push_text(&payload);
            assert_eq!(outbox.bytes, tungstenite_bytes(&payload), "length {len}");
        }
    }

    #[tokio::test]
    async fn a_batch_is_written_whole_and_the_buffer_released() {
        let mut outbox = Outbox::default();
        outbox.push_text(b"{\"event\":\"a\"}");
        outbox.push_text(&[b'y'; 300]);
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
        assert_eq!(outbox.bytes.capacity(), 0, "no buffer kept once written");
    }

    #[tokio::test]
    async fn a_reader_that_never_reads_is_reported_as_stalled_and_the_rest_kept() {
        let (mut writer, _reader) = tokio::io::duplex(64);
        let mut outbox = Outbox::default();
        outbox.push_text(&[b'z'; 1000]);
        let result = outbox
            .write_to(&mut writer, Duration::from_millis(50))
            .await;
        assert!(matches!(result, Err(WriteError::Stalled(_))), "{result:?}");
        assert!(!outbox.is_empty(), "what was not written is kept");
        assert_eq!(outbox.written, 64, "the part the pipe took is remembered");
    }
}
