//! Wrong dashboard tokens, counted per client address. The token is long
//! and random, so guessing cannot succeed, but an unthrottled guesser still
//! fills the log and costs a comparison per try. After [`MAX_WRONG`] wrong
//! tokens within [`WINDOW`] an address is refused (429) until the window
//! ends; the log gets the first wrong token and one summary line when an
//! address is cut off, not a line per guess.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Wrong tokens an address may send within [`WINDOW`].
pub const MAX_WRONG: u32 = 10;

/// How long wrong tokens are remembered.
pub const WINDOW: Duration = Duration::from_secs(60);

/// Addresses remembered at most; beyond it, windows that ended are dropped.
const MAX_ADDRESSES: usize = 10_000;

#[derive(Debug, Default)]
pub struct WrongTokens {
    by_address: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl WrongTokens {
    /// Whether `ip` may try a token now.
    pub fn may_try(&self, ip: IpAddr) -> bool {
        let map = self.by_address.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(&ip) {
            Some((since, wrong)) => since.elapsed() >= WINDOW || *wrong < MAX_WRONG,
            None => true,
        }
    }

    /// Records a wrong token from `ip` and logs it when that is news.
    pub fn record(&self, ip: IpAddr) {
        let mut map = self.by_address.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_ADDRESSES {
            map.retain(|_, (since, _)| since.elapsed() < WINDOW);
        }
        let entry = map.entry(ip).or_insert((Instant::now(), 0));
        if entry.0.elapsed() >= WINDOW {
            *entry = (Instant::now(), 0);
        }
        entry.1 += 1;
        match entry.1 {
            1 => tracing::warn!("Refused a dashboard login from {ip} with a wrong token"),
            MAX_WRONG => tracing::warn!(
                "{MAX_WRONG} wrong dashboard tokens from {ip} within {} s; refusing its logins for the rest of the minute",
                WINDOW.as_secs()
            ),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_cut_off_after_the_allowed_wrong_tokens_and_others_are_not() {
        let wrong = WrongTokens::default();
        let guesser: IpAddr = "192.0.2.7".parse().unwrap();
        let admin: IpAddr = "192.0.2.8".parse().unwrap();
        for _ in 0..MAX_WRONG {
            assert!(wrong.may_try(guesser));
            wrong.record(guesser);
        }
        assert!(!wrong.may_try(guesser));
        assert!(wrong.may_try(admin));
    }
}
