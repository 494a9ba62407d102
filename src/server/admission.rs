//! Who may open a websocket: the browser origin allow-list, the real client
//! address behind a trusted proxy, and connection limits (in all and per IP).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use hyper::HeaderMap;

use crate::config::ClientAddressHeader;

/// The client's address: the peer, or, when the peer is a trusted proxy,
/// the address it names in `header`. A trusted proxy that names nobody
/// stands for its clients, who then share its address's budget.
pub fn client_ip(
    peer: SocketAddr,
    headers: &HeaderMap,
    trusted_proxies: &[IpAddr],
    header: ClientAddressHeader,
) -> IpAddr {
    identified_client(peer, headers, trusted_proxies, header).unwrap_or(peer.ip().to_canonical())
}

/// The client's address when it is known: the peer itself, or what a
/// trusted proxy says in `header`, the one header it overwrites. Any other
/// forwarding header came from the client through the proxy and is not
/// read. `None` when a trusted proxy names nobody (or something that is not
/// an address).
pub fn identified_client(
    peer: SocketAddr,
    headers: &HeaderMap,
    trusted_proxies: &[IpAddr],
    header: ClientAddressHeader,
) -> Option<IpAddr> {
    let peer_ip = peer.ip().to_canonical();
    let trusted = |ip: IpAddr| {
        trusted_proxies
            .iter()
            .any(|proxy| proxy.to_canonical() == ip.to_canonical())
    };
    if !trusted(peer_ip) {
        return Some(peer_ip);
    }
    let values = headers
        .get_all(header.header_name())
        .iter()
        .map(|value| value.to_str().ok());
    // Every line of the header, as one list in order (a proxy may add a
    // line of its own instead of extending the last).
    let mut hops = Vec::new();
    for value in values {
        let value = value?;
        hops.extend(value.split(',').map(str::trim));
    }
    match header {
        ClientAddressHeader::XRealIp => parse_address(hops.first()?),
        ClientAddressHeader::XForwardedFor => rightmost_untrusted(hops.into_iter(), trusted),
        ClientAddressHeader::Forwarded => {
            let addresses = hops.into_iter().map(|element| {
                element
                    .split(';')
                    .filter_map(|pair| pair.split_once('='))
                    .find(|(name, _)| name.trim().eq_ignore_ascii_case("for"))
                    .map_or("", |(_, value)| value.trim())
            });
            rightmost_untrusted(addresses, trusted)
        }
    }
}

/// The right-most address that is not a trusted proxy: what the last
/// trusted proxy saw. `None` when one on the way is not an address (a
/// proxy's obfuscated name, or garbage: nothing further left can be told).
fn rightmost_untrusted<'a>(
    hops: impl DoubleEndedIterator<Item = &'a str>,
    trusted: impl Fn(IpAddr) -> bool,
) -> Option<IpAddr> {
    for hop in hops.rev() {
        let ip = parse_address(hop)?;
        if !trusted(ip) {
            return Some(ip);
        }
    }
    None
}

/// An address as proxies write it: `192.0.2.1`, `192.0.2.1:4711`,
/// `2001:db8::1`, `[2001:db8::1]:4711`, optionally in quotes.
fn parse_address(text: &str) -> Option<IpAddr> {
    let text = text.trim().trim_matches('"');
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Ok(socket) = text.parse::<SocketAddr>() {
        return Some(socket.ip().to_canonical());
    }
    text.strip_prefix('[')
        .and_then(|rest| rest.split_once(']'))
        .and_then(|(ip, _)| ip.parse::<IpAddr>().ok())
        .map(|ip| ip.to_canonical())
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

/// The share of `max_connections` below which every address is admitted,
/// in percent. A school, an office or a mobile carrier puts hundreds of
/// visitors behind one address; while the server has room, none of them is
/// refused.
pub const HIGH_WATER_PERCENT: usize = 90;

/// Connections open at which the per-address rule starts to apply.
pub fn high_water_mark(max_total: usize) -> usize {
    max_total * HIGH_WATER_PERCENT / 100
}

/// The most connections one address may hold for a new one to be admitted,
/// when `open` of `max_total` are open: no limit below the high-water mark;
/// above it, `max_per_address`, shrinking in step with the places left down
/// to 1 for the last place. So as the server fills, the addresses holding
/// the most connections are refused first, and the last places go to
/// addresses that hold none.
pub fn address_share(open: usize, max_total: usize, max_per_address: usize) -> usize {
    let high_water = high_water_mark(max_total);
    if open < high_water {
        return usize::MAX;
    }
    let band = (max_total - high_water).max(1);
    let room = max_total.saturating_sub(open);
    max_per_address
        .saturating_mul(room)
        .div_ceil(band)
        .clamp(1, max_per_address.max(1))
}

/// What a pool of connections may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    /// `max_connections`: the size the high-water mark is taken of.
    pub max_total: usize,
    /// `max_connections_per_ip`: the most one address may hold once the
    /// pool is past its high-water mark.
    pub max_per_address: usize,
    /// Whether a pool at `max_total` refuses everyone (websockets), or
    /// only applies the shrinking per-address share (plain TCP, where the
    /// forum's own requests must still get in).
    pub full_refuses: bool,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    by_ip: HashMap<IpAddr, usize>,
}

/// Counts open connections, in all and per client address.
#[derive(Debug, Default)]
pub struct ConnectionSlots {
    counts: Mutex<Counts>,
}

/// Why a connection was refused a slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotRefused {
    ServerFull {
        max: usize,
    },
    /// The pool is past its high-water mark and this address already holds
    /// its share.
    BusiestAddress {
        ip: IpAddr,
        holds: usize,
        share: usize,
        max: usize,
    },
}

impl SlotRefused {
    /// The reason's label in `flarum_ws_refusals_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::ServerFull { .. } => "server_full",
            Self::BusiestAddress { .. } => "address_share",
        }
    }
}

impl std::fmt::Display for SlotRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::ServerFull { max } => write!(
                f,
                "Over capacity: the server holds its maximum of {max} connections; retry later"
            ),
            Self::BusiestAddress {
                ip,
                holds,
                share,
                max,
            } => write!(
                f,
                "Over capacity: {ip} already has {holds} connections open and the server is near its maximum of {max} (past {} open, one address may hold {share}); retry later",
                high_water_mark(*max)
            ),
        }
    }
}

/// One admitted connection; gives its slot back when dropped.
#[derive(Debug)]
pub struct ConnectionSlot {
    slots: Arc<ConnectionSlots>,
    ip: IpAddr,
}

impl ConnectionSlots {
    /// Admits one more websocket from `ip`, or says why not (the server is
    /// full, or `ip` holds its share past the high-water mark).
    pub fn try_admit(
        self: &Arc<Self>,
        ip: IpAddr,
        capacity: Capacity,
    ) -> Result<ConnectionSlot, SlotRefused> {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let total = counts.total;
        if capacity.full_refuses && total >= capacity.max_total {
            return Err(SlotRefused::ServerFull {
                max: capacity.max_total,
            });
        }
        let share = address_share(total, capacity.max_total, capacity.max_per_address);
        let from_ip = counts.by_ip.entry(ip).or_default();
        if *from_ip >= share {
            let holds = *from_ip;
            if holds == 0 {
                counts.by_ip.remove(&ip);
            }
            return Err(SlotRefused::BusiestAddress {
                ip,
                holds,
                share,
                max: capacity.max_total,
            });
        }
        *from_ip += 1;
        counts.total += 1;
        Ok(ConnectionSlot {
            slots: self.clone(),
            ip,
        })
    }

    /// Connections `ip` holds open now.
    pub fn held_by(&self, ip: IpAddr) -> usize {
        let counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        counts.by_ip.get(&ip).copied().unwrap_or(0)
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.counts.lock().unwrap_or_else(|p| p.into_inner()).total
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

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn forwarded_addresses_count_only_from_trusted_proxies() {
        use ClientAddressHeader::*;
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", "10.0.0.1, 203.0.113.7".parse().unwrap());
        let proxy: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let stranger: SocketAddr = "198.51.100.2:5000".parse().unwrap();
        let trusted = [ip("127.0.0.1")];
        assert_eq!(
            client_ip(proxy, &headers, &trusted, XForwardedFor),
            ip("203.0.113.7")
        );
        assert_eq!(
            client_ip(stranger, &headers, &trusted, XForwardedFor),
            ip("198.51.100.2")
        );
        assert_eq!(
            client_ip(proxy, &headers, &[], XForwardedFor),
            ip("127.0.0.1")
        );
        // A trusted proxy that does not say who the client is.
        assert_eq!(
            identified_client(proxy, &HeaderMap::new(), &trusted, XRealIp),
            None
        );
        assert_eq!(
            identified_client(stranger, &HeaderMap::new(), &trusted, XRealIp),
            Some(ip("198.51.100.2"))
        );
    }

    #[test]
    fn only_the_header_the_proxy_overwrites_is_read() {
        use ClientAddressHeader::*;
        let proxy: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let trusted = [ip("127.0.0.1"), ip("10.0.0.2")];
        // nginx with `X-Real-IP $remote_addr` passes the client's own
        // X-Forwarded-For on unchanged: it is not read.
        let mut spoofed = HeaderMap::new();
        spoofed.insert("x-forwarded-for", "198.51.100.99".parse().unwrap());
        spoofed.insert("x-real-ip", "203.0.113.7".parse().unwrap());
        assert_eq!(
            client_ip(proxy, &spoofed, &trusted, XRealIp),
            ip("203.0.113.7")
        );
        // The right-most address that is not a trusted proxy: what a
        // client writes itself is further left.
        let mut chain = HeaderMap::new();
        chain.append("x-forwarded-for", "1.2.3.4, 203.0.113.7".parse().unwrap());
        chain.append("x-forwarded-for", "10.0.0.2".parse().unwrap());
        assert_eq!(
            client_ip(proxy, &chain, &trusted, XForwardedFor),
            ip("203.0.113.7")
        );
        let mut forwarded = HeaderMap::new();
        forwarded.insert(
            "forwarded",
            r#"for=1.2.3.4, for="[2001:db8::7]:4711";proto=https, for=10.0.0.2"#
                .parse()
                .unwrap(),
        );
        assert_eq!(
            client_ip(proxy, &forwarded, &trusted, Forwarded),
            ip("2001:db8::7")
        );
        // Garbage or an obfuscated name: the proxy's own address.
        let mut garbage = HeaderMap::new();
        garbage.insert("x-forwarded-for", "203.0.113.7, unknown".parse().unwrap());
        assert_eq!(
            client_ip(proxy, &garbage, &trusted, XForwardedFor),
            ip("127.0.0.1")
        );
        assert_eq!(parse_address("192.0.2.1:80"), Some(ip("192.0.2.1")));
        assert_eq!(parse_address("::ffff:192.0.2.1"), Some(ip("192.0.2.1")));
    }

    fn websockets(max_total: usize, max_per_address: usize) -> Capacity {
        Capacity {
            max_total,
            max_per_address,
            full_refuses: true,
        }
    }

    #[test]
    fn below_the_high_water_mark_one_address_may_hold_any_number() {
        let slots = Arc::new(ConnectionSlots::default());
        let school: IpAddr = "192.0.2.1".parse().unwrap();
        // 1 000 places, 100 per address under pressure: 150 tabs behind
        // one address all get in while the server has room.
        let held: Vec<_> = (0..150)
            .map(|_| slots.try_admit(school, websockets(1000, 100)).unwrap())
            .collect();
        assert_eq!(slots.open(), 150);
        drop(held);
        assert_eq!(slots.open(), 0);
    }

    #[test]
    fn past_the_high_water_mark_the_busiest_addresses_are_refused_first() {
        let slots = Arc::new(ConnectionSlots::default());
        let busy: IpAddr = "192.0.2.1".parse().unwrap();
        let capacity = websockets(100, 20);
        let mut held = Vec::new();
        // 89 from the busy address: still under the mark (90).
        for _ in 0..89 {
            held.push(slots.try_admit(busy, capacity).unwrap());
        }
        // At 89 open the rule does not apply yet: one more is admitted.
        held.push(slots.try_admit(busy, capacity).unwrap());
        // Past the mark the busy address (90 held) is refused ...
        let refused = slots.try_admit(busy, capacity).unwrap_err();
        assert!(
            matches!(refused, SlotRefused::BusiestAddress { holds: 90, .. }),
            "{refused:?}"
        );
        assert!(refused.to_string().contains("192.0.2.1 already has 90"));
        // ... while addresses holding none take the last places, one each.
        for n in 0..10u8 {
            let ip = IpAddr::from([198, 51, 100, n]);
            held.push(slots.try_admit(ip, capacity).unwrap());
        }
        assert!(matches!(
            slots.try_admit("203.0.113.1".parse().unwrap(), capacity),
            Err(SlotRefused::ServerFull { max: 100 })
        ));
        // The share shrinks with the places left.
        assert_eq!(address_share(89, 100, 20), usize::MAX);
        assert_eq!(address_share(90, 100, 20), 20);
        assert_eq!(address_share(95, 100, 20), 10);
        assert_eq!(address_share(99, 100, 20), 2);
        assert_eq!(address_share(100, 100, 20), 1);
        assert_eq!(address_share(3, 3, 2), 1);
    }

    #[test]
    fn slots_are_given_back() {
        let slots = Arc::new(ConnectionSlots::default());
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let a = slots.try_admit(ip, websockets(3, 2)).unwrap();
        let _b = slots.try_admit(ip, websockets(3, 2)).unwrap();
        assert!(matches!(
            slots.try_admit(ip, websockets(3, 2)),
            Err(SlotRefused::BusiestAddress { .. })
        ));
        drop(a);
        let _c = slots.try_admit(ip, websockets(3, 2)).unwrap();
        // Two held: a total of 2 is full.
        assert!(matches!(
            slots.try_admit("192.0.2.9".parse().unwrap(), websockets(2, 5)),
            Err(SlotRefused::ServerFull { max: 2 })
        ));
        // A plain TCP pool past its total still admits an address holding none.
        let tcp = Capacity {
            full_refuses: false,
            ..websockets(2, 5)
        };
        assert!(slots.try_admit("192.0.2.9".parse().unwrap(), tcp).is_ok());
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
