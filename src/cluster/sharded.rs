//! A node's two connections to a Redis Cluster: one publishing on its own
//! lane (SPUBLISH, see [`super::channels`]), one listening to every lane
//! (SSUBSCRIBE). The redis crate's cluster client finds each lane's shard
//! master and follows MOVED answers; a failover shows up here as a lost
//! connection, and the node then reconnects from scratch (all lanes or
//! none), asking the others for what it missed, as after any outage.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use redis::aio::{AsyncPushSender, SendError};
use redis::cluster_async::ClusterConnection;
use redis::{ProtocolVersion, PushInfo, PushKind, Value};
use tokio::sync::mpsc;

use super::redis_client::Target;

/// Bytes of bus messages received from the cluster and not yet applied, at
/// most. Past it (a node too slow to keep up), the connection is dropped
/// and made again: the others' events are asked for again by number and
/// their state comes as snapshots, so nothing is lost and nothing grows.
pub const MAX_RECEIVED_BYTES: usize = 64 << 20;

/// Connects the publishing side.
pub async fn connect_publisher(target: &Target) -> redis::RedisResult<ClusterConnection> {
    target
        .cluster_client(|builder| builder)?
        .get_async_connection()
        .await
}

/// What the listening side heard.
pub enum Heard {
    /// A message on one of the lanes.
    Message(Vec<u8>),
    /// The connection to a shard was lost, or messages came faster than
    /// they were applied: reconnect.
    Lost(&'static str),
}

/// The cluster client's pushes, queued up to [`MAX_RECEIVED_BYTES`].
struct BoundedPushes {
    sender: mpsc::UnboundedSender<PushInfo>,
    queued: Arc<AtomicUsize>,
    overflowed: Arc<AtomicBool>,
}

/// The bytes a push holds (its bulk strings).
fn push_bytes(push: &PushInfo) -> usize {
    push.data
        .iter()
        .map(|value| match value {
            Value::BulkString(bytes) => bytes.len(),
            _ => 16,
        })
        .sum()
}

impl AsyncPushSender for BoundedPushes {
    fn send(&self, push: PushInfo) -> Result<(), SendError> {
        let size = push_bytes(&push);
        if self.queued.fetch_add(size, Ordering::Relaxed) + size > MAX_RECEIVED_BYTES {
            self.queued.fetch_sub(size, Ordering::Relaxed);
            self.overflowed.store(true, Ordering::Relaxed);
            return Ok(());
        }
        self.sender.send(push).map_err(|_| SendError)
    }
}

/// The listening side: subscribed to every lane.
pub struct Listener {
    /// Kept open: the pushes arrive through it.
    connection: Option<ClusterConnection>,
    pushes: mpsc::UnboundedReceiver<PushInfo>,
    queued: Arc<AtomicUsize>,
    overflowed: Arc<AtomicBool>,
}

impl Listener {
    /// A listener not connected yet, and the sender of its pushes.
    fn with_queue() -> (Self, BoundedPushes) {
        let (sender, pushes) = mpsc::unbounded_channel();
        let listener = Self {
            connection: None,
            pushes,
            queued: Arc::new(AtomicUsize::new(0)),
            overflowed: Arc::new(AtomicBool::new(false)),
        };
        let bounded = BoundedPushes {
            sender,
            queued: listener.queued.clone(),
            overflowed: listener.overflowed.clone(),
        };
        (listener, bounded)
    }

    /// Connects and subscribes to `lanes`.
    pub async fn subscribe(target: &Target, lanes: &[String]) -> redis::RedisResult<Self> {
        let (mut listener, pushes) = Self::with_queue();
        let client = target.cluster_client(|builder| {
            builder
                .use_protocol(ProtocolVersion::RESP3)
                .push_sender(pushes)
        })?;
        let mut connection = client.get_async_connection().await?;
        // One lane at a time: SSUBSCRIBE takes channels of one slot only.
        for lane in lanes {
            connection.ssubscribe(lane).await?;
        }
        listener.connection = Some(connection);
        Ok(listener)
    }

    /// The next message, or why the connection must be made again.
    pub async fn next(&mut self) -> Heard {
        loop {
            if self.overflowed.load(Ordering::Relaxed) {
                return Heard::Lost("messages arrived faster than this node applied them");
            }
            let Some(push) = self.pushes.recv().await else {
                return Heard::Lost("the cluster connection ended");
            };
            self.queued.fetch_sub(push_bytes(&push), Ordering::Relaxed);
            match push.kind {
                PushKind::SMessage => {
                    if let Some(Value::BulkString(payload)) = push.data.into_iter().nth(1) {
                        return Heard::Message(payload);
                    }
                }
                PushKind::Disconnection => {
                    return Heard::Lost("a connection to a shard was lost");
                }
                PushKind::SUnsubscribe => {
                    return Heard::Lost("a shard unsubscribed this node (its slots moved)");
                }
                _ => {}
            }
        }
    }
}

/// `check`'s look at a Redis Cluster: its state and shards as it reports
/// them (CLUSTER INFO, CLUSTER NODES), the nodes listening (PUBSUB
/// SHARDNUMSUB on the first lane, which every node listens to), and the
/// sharded commands a node runs: SSUBSCRIBE to every lane, SPUBLISH of a
/// probe the nodes ignore.
pub async fn probe(target: &Target, prefix: &str) -> redis::RedisResult<super::Probed> {
    use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, Slot, SlotAddr};

    let lanes = super::channels::lanes(prefix);
    let mut connection = connect_publisher(target).await?;
    let info: String = redis::cmd("CLUSTER")
        .arg("INFO")
        .query_async(&mut connection)
        .await?;
    let nodes_text: String = redis::cmd("CLUSTER")
        .arg("NODES")
        .query_async(&mut connection)
        .await?;
    let state = info
        .lines()
        .find_map(|line| line.strip_prefix("cluster_state:"))
        .unwrap_or("unknown")
        .trim()
        .to_owned();
    if state != "ok" {
        return Err(redis::RedisError::from((
            redis::ErrorKind::Server(redis::ServerErrorKind::ClusterDown),
            "the Redis Cluster reports cluster_state:fail (some slots have no working master)",
            format!("cluster_state:{state}; see redis-cli --cluster check"),
        )));
    }
    let topology = Topology::read(&nodes_text);
    let first_lane = Route::with_slot(Slot::for_key(lanes[0].as_bytes()), SlotAddr::Master);
    let counts = connection
        .route_command(
            redis::cmd("PUBSUB")
                .arg("SHARDNUMSUB")
                .arg(&lanes[0])
                .clone(),
            RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(first_lane)),
        )
        .await?;
    let counts: Vec<(String, usize)> = redis::from_redis_value(counts)?;
    let _listener = Listener::subscribe(target, &lanes).await?;
    let _: usize = redis::cmd("SPUBLISH")
        .arg(&lanes[0])
        .arg(super::redis_client::probe_message())
        .query_async(&mut connection)
        .await?;
    Ok(super::Probed {
        nodes: counts.first().map_or(0, |(_, n)| *n),
        master: None,
        topology: Some(topology.to_string()),
        channels: format!(
            "its {} shard channels {prefix}:bus:0 to {prefix}:bus:{}",
            lanes.len(),
            lanes.len() - 1
        ),
        warning: topology.warning(),
    })
}

/// A Redis Cluster's shards, from `CLUSTER NODES`.
#[derive(Debug, Default, PartialEq)]
struct Topology {
    /// Masters holding slots.
    masters: usize,
    replicas: usize,
    /// Nodes flagged `fail` or `fail?`.
    failing: usize,
    /// Masters with no working replica (a failover there would stop the
    /// shard).
    masters_alone: usize,
}

impl Topology {
    fn read(nodes: &str) -> Self {
        let lines: Vec<Vec<&str>> = nodes
            .lines()
            .map(|line| line.split_whitespace().collect())
            .filter(|fields: &Vec<&str>| fields.len() >= 8)
            .collect();
        let failing_flag = |flags: &str| flags.split(',').any(|f| f == "fail" || f == "fail?");
        let mut topology = Topology::default();
        for fields in &lines {
            let flags = fields[2];
            if failing_flag(flags) {
                topology.failing += 1;
            }
            if flags.split(',').any(|f| f == "master") && fields.len() > 8 {
                topology.masters += 1;
                let id = fields[0];
                let working_replica = lines
                    .iter()
                    .any(|other| other[3] == id && !failing_flag(other[2]));
                if !working_replica {
                    topology.masters_alone += 1;
                }
            } else if flags.split(',').any(|f| f == "slave") {
                topology.replicas += 1;
            }
        }
        topology
    }

    /// What puts the bus at risk, and the fix.
    fn warning(&self) -> Option<(String, String)> {
        if self.failing > 0 {
            Some((
                format!("{} cluster node(s) are flagged as failing", self.failing),
                "see redis-cli --cluster check HOST:PORT, and start or replace the failed nodes"
                    .into(),
            ))
        } else if self.masters_alone > 0 {
            Some((
                format!(
                    "{} of the {} shard(s) have no working replica: if such a master fails, the bus stops until it is back",
                    self.masters_alone, self.masters
                ),
                "give each master a replica (redis-cli --cluster add-node NEW HOST:PORT --cluster-slave)".into(),
            ))
        } else {
            None
        }
    }
}

impl std::fmt::Display for Topology {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let plural =
            |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
        write!(
            f,
            "a Redis Cluster of {} ({}, {}), cluster_state:ok",
            plural(self.masters, "shard", "shards"),
            plural(self.masters, "master", "masters"),
            plural(self.replicas, "replica", "replicas"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The shape of `CLUSTER NODES` as redis-server 7.0 prints it.
    const NODES: &str = "\
a1 127.0.0.1:7101@17101 myself,master - 0 0 1 connected 0-5460
a2 127.0.0.1:7102@17102 master - 0 1 2 connected 5461-10922
a3 127.0.0.1:7103@17103 master - 0 1 3 connected 10923-16383
b1 127.0.0.1:7104@17104 slave a1 0 1 1 connected
b2 127.0.0.1:7105@17105 slave a2 0 1 2 connected
b3 127.0.0.1:7106@17106 slave,fail a3 0 1 3 disconnected
";

    /// Pushes past the byte budget are not queued; the listener then asks
    /// for a fresh connection instead of holding them.
    #[tokio::test]
    async fn received_messages_wait_within_their_byte_budget() {
        let (mut listener, bounded) = Listener::with_queue();
        let message = |bytes: usize| PushInfo {
            kind: PushKind::SMessage,
            data: vec![
                Value::BulkString(b"forum:bus:3".to_vec()),
                Value::BulkString(vec![b'x'; bytes]),
            ],
        };
        let part = MAX_RECEIVED_BYTES / 4;
        for _ in 0..3 {
            bounded.send(message(part)).unwrap();
        }
        assert!(!listener.overflowed.load(Ordering::Relaxed));
        bounded.send(message(part)).unwrap();
        assert!(
            listener.overflowed.load(Ordering::Relaxed),
            "the fourth is past it"
        );
        assert!(listener.queued.load(Ordering::Relaxed) <= MAX_RECEIVED_BYTES);
        assert!(matches!(listener.next().await, Heard::Lost(_)));
    }

    #[test]
    fn topology_counts_shards_and_names_what_is_at_risk() {
        let topology = Topology::read(NODES);
        assert_eq!(
            topology,
            Topology {
                masters: 3,
                replicas: 3,
                failing: 1,
                masters_alone: 1
            }
        );
        assert!(topology.warning().unwrap().0.contains("1 cluster node(s)"));
        let healthy = Topology::read(&NODES.replace("slave,fail", "slave"));
        assert_eq!(healthy.warning(), None);
        let alone = Topology::read(
            &NODES
                .lines()
                .filter(|line| !line.starts_with("b3"))
                .collect::<Vec<_>>()
                .join("\n"),
        );
        assert!(alone.warning().unwrap().0.contains("1 of the 3 shard(s)"));
    }
}
