//! Every limit and budget the server enforces, once, as rows: SECURITY.md's
//! table is generated from them (tests/suite/docs.rs), so the document
//! cannot claim a value the code does not hold. A setting's row names the
//! setting (its default and range come from the settings rows); a fixed
//! limit's row reads the constant that enforces it.

use crate::hub::{MAX_QUEUED_BYTES, MAX_QUEUED_BYTES_PER_ADDRESS, MAX_QUEUED_BYTES_TOTAL};
use crate::webhooks::{QUEUE_BYTES, QUEUE_CAPACITY, REPLY_BYTES};

use super::SHUTDOWN_GRACE;
use super::admission::HIGH_WATER_PERCENT;
use super::connection::{MAX_HEAD_BYTES, SEND_BUFFER_BYTES};
use super::guesses::{MAX_WRONG, WINDOW};
use super::realtime::{COMPOSE_SIGNAL_INTERVAL, TYPING_WORK};
use super::websocket::{
    BYTE_BURST, BYTES_PER_SECOND, CHANNEL_CREATION_BURST, CHANNEL_CREATIONS_PER_SECOND,
    CONNECTIONS_PER_ALLOWANCE, FRAME_BURST, FRAMES_PER_SECOND, MAX_BATCH, MAX_BATCH_BYTES,
    SUBSCRIBES_PER_SECOND,
};

/// What a limit's value is.
#[derive(Debug, Clone, Copy)]
pub enum Amount {
    /// The setting with this key: its default and range.
    Setting(&'static str),
    /// A fixed value, written from the constants that hold it.
    Fixed(fn() -> String),
}

/// One limit: what it is called, its value and what it bounds.
#[derive(Debug, Clone, Copy)]
pub struct Limit {
    pub name: &'static str,
    pub amount: Amount,
    /// What it bounds, and what happens past it.
    pub bounds: &'static str,
}

/// `2097152` → `2 MiB`, `65536` → `64 KiB`, others in bytes.
pub fn bytes(n: usize) -> String {
    if n >= 1 << 20 && n.is_multiple_of(1 << 20) {
        format!("{} MiB", n >> 20)
    } else if n >= 1 << 10 && n.is_multiple_of(1 << 10) {
        format!("{} KiB", n >> 10)
    } else {
        format!("{n} bytes")
    }
}

/// Every limit, in SECURITY.md's order.
pub static LIMITS: &[Limit] = &[
    Limit {
        name: "handshake_timeout",
        amount: Amount::Setting("handshake_timeout"),
        bounds: "request head; then the whole request, body included (408)",
    },
    Limit {
        name: "activity_timeout",
        amount: Amount::Setting("activity_timeout"),
        bounds: "silence before the server pings a websocket",
    },
    Limit {
        name: "pong_timeout",
        amount: Amount::Setting("pong_timeout"),
        bounds: "answer to a ping (4201); a write making no progress (4100)",
    },
    Limit {
        name: "max_connections",
        amount: Amount::Setting("max_connections"),
        bounds: "websockets in all (4100)",
    },
    Limit {
        name: "high-water mark",
        amount: Amount::Fixed(|| format!("{HIGH_WATER_PERCENT} % of `max_connections`")),
        bounds: "below it every address is admitted, however many tabs share it; past it, `max_connections_per_ip` applies",
    },
    Limit {
        name: "max_connections_per_ip",
        amount: Amount::Setting("max_connections_per_ip"),
        bounds: "past the high-water mark, websockets one client address may hold, shrinking to 1 as the last places go, so the busiest addresses are refused first (4100); the same for TCP connections per untrusted peer. A trusted proxy that names no client stands for its clients",
    },
    Limit {
        name: "max_subscriptions_per_connection",
        amount: Amount::Setting("max_subscriptions_per_connection"),
        bounds: "channels per websocket",
    },
    Limit {
        name: "socket_queue_capacity",
        amount: Amount::Setting("socket_queue_capacity"),
        bounds: "unsent frames per websocket (4100)",
    },
    Limit {
        name: "queued bytes",
        amount: Amount::Fixed(|| format!("{} per websocket", bytes(MAX_QUEUED_BYTES))),
        bounds: "unsent event bytes per websocket (4100); one larger event alone still goes out",
    },
    Limit {
        name: "queued bytes per address",
        amount: Amount::Fixed(|| {
            format!(
                "{} per client address, {} in all",
                bytes(MAX_QUEUED_BYTES_PER_ADDRESS),
                bytes(MAX_QUEUED_BYTES_TOTAL)
            )
        }),
        bounds: "unsent bytes the sockets of one address, and of everyone, hold (a frame shared by many sockets weighs its share): past it the sockets holding the most are dropped first (4100), whoever they claim to be",
    },
    Limit {
        name: "write batch",
        amount: Amount::Fixed(|| {
            format!("{MAX_BATCH} frames or {}", bytes(MAX_BATCH_BYTES as usize))
        }),
        bounds: "what a session writes at once; bounds what a client that stops mid-write leaves behind",
    },
    Limit {
        name: "kernel send buffer",
        amount: Amount::Fixed(|| format!("{} asked (Linux doubles it)", bytes(SEND_BUFFER_BYTES))),
        bounds: "bytes the kernel holds per connection",
    },
    Limit {
        name: "subscriptions",
        amount: Amount::Fixed(|| {
            format!(
                "`max_subscriptions_per_connection` at once, then {SUBSCRIBES_PER_SECOND} a second per websocket"
            )
        }),
        bounds: "new channels per websocket (429)",
    },
    Limit {
        name: "new channels",
        amount: Amount::Fixed(|| {
            format!(
                "{CHANNEL_CREATION_BURST} at once, then {CHANNEL_CREATIONS_PER_SECOND} a second per client address, once more for each {CONNECTIONS_PER_ALLOWANCE} websockets it holds"
            )
        }),
        bounds: "channels one address brings into being, reconnecting or not (429); joining a channel that exists is not counted",
    },
    Limit {
        name: "client frames",
        amount: Amount::Fixed(|| {
            format!(
                "{FRAME_BURST} frames and {} at once, then {FRAMES_PER_SECOND} frames and {} a second per websocket",
                bytes(BYTE_BURST as usize),
                bytes(BYTES_PER_SECOND as usize)
            )
        }),
        bounds: "every frame a client sends (pings and empty continuations too): past it, the connection is not read until it is within its rate again",
    },
    Limit {
        name: "webhook queue",
        amount: Amount::Fixed(|| {
            format!(
                "{QUEUE_CAPACITY} events and {} per receiver",
                bytes(QUEUE_BYTES)
            )
        }),
        bounds: "events waiting for a receiver (then dropped, counted)",
    },
    Limit {
        name: "webhook reply",
        amount: Amount::Fixed(|| bytes(REPLY_BYTES)),
        bounds: "what is read of a receiver's answer",
    },
    Limit {
        name: "typing work (Flarum 2)",
        amount: Amount::Fixed(|| {
            format!(
                "{TYPING_WORK} tasks; compose signals once every {} s per user",
                COMPOSE_SIGNAL_INTERVAL.as_secs()
            )
        }),
        bounds: "database work typing signals cause",
    },
    Limit {
        name: "max_message_bytes",
        amount: Amount::Setting("max_message_bytes"),
        bounds: "one websocket message (1009)",
    },
    Limit {
        name: "max_request_body_bytes",
        amount: Amount::Setting("max_request_body_bytes"),
        bounds: "one API request body (413)",
    },
    Limit {
        name: "max_event_data_bytes",
        amount: Amount::Setting("max_event_data_bytes"),
        bounds: "one event's data (413)",
    },
    Limit {
        name: "max_presence_members",
        amount: Amount::Setting("max_presence_members"),
        bounds: "members per presence channel",
    },
    Limit {
        name: "max_presence_user_info_bytes",
        amount: Amount::Setting("max_presence_user_info_bytes"),
        bounds: "one member's `user_info`",
    },
    Limit {
        name: "cache_ttl",
        amount: Amount::Setting("cache_ttl"),
        bounds: "how long a cache channel keeps its event",
    },
    Limit {
        name: "max_cached_channels",
        amount: Amount::Setting("max_cached_channels"),
        bounds: "cache channels holding an event",
    },
    Limit {
        name: "client_events_per_second",
        amount: Amount::Setting("client_events_per_second"),
        bounds: "client events per websocket (4301)",
    },
    Limit {
        name: "api_requests_per_second",
        amount: Amount::Setting("api_requests_per_second"),
        bounds: "signed API requests (429)",
    },
    Limit {
        name: "request head",
        amount: Amount::Fixed(|| bytes(MAX_HEAD_BYTES)),
        bounds: "request line and headers",
    },
    Limit {
        name: "dashboard history",
        amount: Amount::Fixed(|| {
            format!(
                "{} in all: a sample every {} s for an hour, every {} min for a day, {} marks",
                bytes(crate::telemetry::history::MAX_BYTES),
                crate::telemetry::history::FINE_STEP.as_secs(),
                crate::telemetry::history::COARSE_STEP.as_secs() / 60,
                crate::telemetry::history::MAX_MARKS
            )
        }),
        bounds: "the dashboard's graphs and timeline marks, kept in rings of fixed size whatever happens; the oldest go first",
    },
    Limit {
        name: "dashboard tokens",
        amount: Amount::Fixed(|| {
            format!("{MAX_WRONG} wrong per {} s per address", WINDOW.as_secs())
        }),
        bounds: "then 429 until the window ends",
    },
    Limit {
        name: "handover relay",
        amount: Amount::Fixed(|| bytes(super::relay::MAX_RELAY_BYTES)),
        bounds: "events waiting to be passed between the old and the new process of a handover (each way), so the old one's last tabs miss nothing; past it an event is not passed on, and a warning says so (once a second at most); a message over the same size from the other process ends the relay",
    },
    Limit {
        name: "cluster bus message",
        amount: Amount::Fixed(|| bytes(crate::cluster::MAX_BUS_MESSAGE_BYTES)),
        bounds: "a message read from the cluster's Redis channel; larger ones, and unreadable ones, are ignored and counted (one warning a minute)",
    },
    Limit {
        name: "cluster event log",
        amount: Amount::Fixed(|| {
            format!(
                "{} and {} s",
                bytes(crate::cluster::MAX_EVENT_LOG_BYTES),
                crate::cluster::REPLAY_WINDOW.as_secs()
            )
        }),
        bounds: "a node's events for the other nodes, held while Redis is away and kept after publishing for a node that missed them; older ones, or those past the bytes, are dropped (flarum_ws_redis_messages_dropped when never published)",
    },
    Limit {
        name: "cluster snapshot",
        amount: Amount::Fixed(|| {
            format!(
                "{} parts of {}",
                crate::cluster::MAX_SNAPSHOT_PARTS,
                bytes(crate::cluster::SNAPSHOT_PART_BYTES)
            )
        }),
        bounds: "a node's presence members and signed-in users as told to the other nodes, in parts each far below the bus message limit; members past it are not shared (an error is logged)",
    },
    Limit {
        name: "cluster control queue",
        amount: Amount::Fixed(|| bytes(crate::cluster::MAX_CONTROL_BYTES)),
        bounds: "heartbeats, hellos, resend requests and channel count queries waiting to be published, ahead of everything else; past it they are dropped (each is said or asked again)",
    },
    Limit {
        name: "cluster state queue",
        amount: Amount::Fixed(|| bytes(crate::cluster::MAX_STATE_BYTES)),
        bounds: "presence and sign-in changes waiting to be published; past it they are dropped and the node's whole state is published instead",
    },
    Limit {
        name: "Redis Cluster receive queue",
        amount: Amount::Fixed(|| bytes(crate::cluster::MAX_RECEIVED_BYTES)),
        bounds: "bus messages a node has received from a Redis Cluster and not yet applied; past it the node drops its connection and makes it again, asking the others for what it missed (their events by number, their state as snapshots)",
    },
    Limit {
        name: "shutdown grace",
        amount: Amount::Fixed(|| format!("{} s", SHUTDOWN_GRACE.as_secs())),
        bounds: "time connections get to close before the process exits",
    },
];
