//! Who may open a websocket: the browser origin allow-list, the real client
//! address behind a trusted proxy, and connection limits (in all and per IP).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use hyper::HeaderMap;

/// The client's address: the peer, or, when the peer is a trusted proxy,
/// the address it reports (`X-Forwarded-For`'s last hop, else `X-Real-IP`).
pub fn client_ip(peer: SocketAddr, headers: &HeaderMap, trusted_proxies: &[IpAddr]) -> IpAddr {
    identified_client(peer, headers, trusted_proxies).unwrap_or(peer.ip().to_canonical())
}

/// The client's address when it is known: the peer itself, or what a
/// trusted proxy says. `None` when a trusted proxy does not say: it carries
/// many clients, and counting them all as one address would hold the whole
/// forum to one address's limit.
pub fn identified_client(
    peer: SocketAddr,
    headers: &HeaderMap,
    trusted_proxies: &[IpAddr],
) -> Option<IpAddr> {
    let peer_ip = peer.ip().to_canonical();
    if !trusted_proxies
        .iter()
        .any(|trusted| trusted.to_canonical() == peer_ip)
    {
        return Some(peer_ip);
    }
    let forwarded = headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .and_then(|list| list.rsplit(',').next())
        .and_then(|last| last.trim().parse::<IpAddr>().ok());
    let real = || {
        headers
            .get("x-real-ip")
            .and_then(|v| v.to_str().ok())
            .and_then(|ip| ip.trim().parse::<IpAddr>().ok())
    };
    forwarded.or_else(real)
}

/// Whether a browser from `origin` may connect. Browsers always send
/// `Origin` on websocket handshakes; clients that send none are not
/// browsers and could claim any origin, so they are let through.
pub fn origin_allowed(origin: Option<&str>, allowed: &[String], required: bool) -> bool {
    let Some(origin) = origin else {
        return !required;
    };
    if allowed.is_empty() || allowed.iter().any(|a| a == "*") {
        return true;
    }
    let origin = origin.trim_end_matches('/').to_ascii_lowercase();
    let host = origin
        .split_once("://")
        .map_or(origin.as_str(), |(_, rest)| rest)
        .split(':')
        .next()
        .unwrap_or_default();
    allowed.iter().any(|entry| {
        if entry.contains("://") {
            *entry == origin
        } else {
            // A bare host name: any scheme and port, as flarum/realtime
            // compares only the Origin's host.
            entry == host
        }
    })
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    by_ip: HashMap<IpAddr, usize>,
}

/// Counts open websocket connections, in all and per client address.
#[derive(Debug, Default)]
pub struct ConnectionSlots {
    counts: Mutex<Counts>,
}

/// Why a connection was refused a slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotRefused {
    ServerFull { max: usize },
    TooManyFromAddress { ip: IpAddr, max: usize },
}

/// One admitted connection; gives its slot back when dropped.
#[derive(Debug)]
pub struct ConnectionSlot {
    slots: Arc<ConnectionSlots>,
    ip: IpAddr,
}

impl ConnectionSlots {
    pub fn try_admit(
        self: &Arc<Self>,
        ip: IpAddr,
        max_total: usize,
        max_per_ip: usize,
    ) -> Result<ConnectionSlot, SlotRefused> {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if counts.total >= max_total {
            return Err(SlotRefused::ServerFull { max: max_total });
        }
        let from_ip = counts.by_ip.entry(ip).or_default();
        if *from_ip >= max_per_ip {
            return Err(SlotRefused::TooManyFromAddress {
                ip,
                max: max_per_ip,
            });
        }
        *from_ip += 1;
        counts.total += 1;
        Ok(ConnectionSlot {
            slots: self.clone(),
            ip,
        })
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut counts = self.slots.counts.lock().unwrap_or_else(|p| p.into_inner());
        counts.total = counts.total.saturating_sub(1);
        if let Some(n) = counts.by_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                counts.by_ip.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_addresses_count_only_from_trusted_proxies() {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", "10.0.0.1, 203.0.113.7".parse().unwrap());
        let proxy: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let stranger: SocketAddr = "198.51.100.2:5000".parse().unwrap();
        let trusted = ["127.0.0.1".parse().unwrap()];
        assert_eq!(
            client_ip(proxy, &headers, &trusted),
            "203.0.113.7".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            client_ip(stranger, &headers, &trusted),
            "198.51.100.2".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            client_ip(proxy, &headers, &[]),
            "127.0.0.1".parse::<IpAddr>().unwrap()
        );
        // A trusted proxy that does not say who the client is.
        assert_eq!(identified_client(proxy, &HeaderMap::new(), &trusted), None);
        assert_eq!(
            identified_client(stranger, &HeaderMap::new(), &trusted),
            Some("198.51.100.2".parse::<IpAddr>().unwrap())
        );
    }

    #[test]
    fn slots_are_given_back() {
        let slots = Arc::new(ConnectionSlots::default());
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let a = slots.try_admit(ip, 10, 2).unwrap();
        let _b = slots.try_admit(ip, 10, 2).unwrap();
        assert!(matches!(
            slots.try_admit(ip, 10, 2),
            Err(SlotRefused::TooManyFromAddress { .. })
        ));
        drop(a);
        assert!(slots.try_admit(ip, 10, 2).is_ok());
        // `_b` still holds a slot, so a total of 1 is full.
        assert!(matches!(
            slots.try_admit("192.0.2.9".parse().unwrap(), 1, 5),
            Err(SlotRefused::ServerFull { max: 1 })
        ));
    }

    #[test]
    fn origins_match_exactly_and_hosts_by_host() {
        let allowed = vec!["https://forum.example".to_owned()];
        assert!(origin_allowed(
            Some("https://forum.example/"),
            &allowed,
            false
        ));
        assert!(origin_allowed(
            Some("HTTPS://Forum.Example"),
            &allowed,
            false
        ));
        assert!(!origin_allowed(
            Some("http://forum.example"),
            &allowed,
            false
        ));
        assert!(!origin_allowed(
            Some("https://evil.example"),
            &allowed,
            false
        ));
        assert!(origin_allowed(None, &allowed, false));
        assert!(!origin_allowed(None, &allowed, true));
        assert!(origin_allowed(Some("https://anything"), &[], false));
        let hosts = vec!["forum.example".to_owned()];
        assert!(origin_allowed(
            Some("http://forum.example:8080"),
            &hosts,
            true
        ));
        assert!(!origin_allowed(
            Some("https://forum.example.evil"),
            &hosts,
            true
        ));
    }
}
