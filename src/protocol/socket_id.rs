//! Socket ids: the `"<digits>.<digits>"` strings Pusher hands every connection.
//!
//! Every server SDK validates socket ids against `^\d+\.\d+$` before signing a
//! channel authorization, so the textual form is part of the protocol. Inside
//! the server an id is a `u64` (two 32-bit halves), cheap to hash and copy.

use std::fmt;
use std::str::FromStr;

/// A connection's id, formatted as `high.low`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SocketId(u64);

impl SocketId {
    /// A fresh random id; both halves are non-zero so the text never starts
    /// with a lone `0` that some clients might trim.
    pub fn random() -> Self {
        let high: u32 = rand::random_range(1..=u32::MAX / 2);
        let low: u32 = rand::random_range(1..=u32::MAX);
        Self((u64::from(high) << 32) | u64::from(low))
    }

    /// The id as one number (its two halves), to spread connections over
    /// groups.
    pub fn as_u64(self) -> u64 {
        self.0
    }
}

impl fmt::Display for SocketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.0 >> 32, self.0 & 0xffff_ffff)
    }
}

impl fmt::Debug for SocketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The text was not two groups of digits separated by a dot (or overflowed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid socket_id {0:?}: expected two numbers joined by a dot, like \"123.456\"")]
pub struct InvalidSocketId(pub String);

impl FromStr for SocketId {
    type Err = InvalidSocketId;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || InvalidSocketId(text.chars().take(64).collect());
        let (high, low) = text.split_once('.').ok_or_else(invalid)?;
        let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !all_digits(high) || !all_digits(low) {
            return Err(invalid());
        }
        let high: u32 = high.parse().map_err(|_| invalid())?;
        let low: u32 = low.parse().map_err(|_| invalid())?;
        Ok(Self((u64::from(high) << 32) | u64::from(low)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_ids_match_the_sdk_pattern_and_round_trip() {
        for _ in 0..1000 {
            let id = SocketId::random();
            let text = id.to_string();
            let (a, b) = text.split_once('.').unwrap();
            assert!(a.bytes().all(|c| c.is_ascii_digit()) && !a.is_empty());
            assert!(b.bytes().all(|c| c.is_ascii_digit()) && !b.is_empty());
            assert_eq!(text.parse::<SocketId>().unwrap(), id);
        }
    }

    #[test]
    fn rejects_malformed_ids() {
        for bad in [
            "",
            ".",
            "1.",
            ".1",
            "1.2.3",
            "a.b",
            "1,2",
            "99999999999.1",
            " 1.2",
            "-1.2",
        ] {
            assert!(bad.parse::<SocketId>().is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            "1234.1234".parse::<SocketId>().unwrap().to_string(),
            "1234.1234"
        );
    }
}
