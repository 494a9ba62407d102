//! The Redis channels the nodes talk on.
//!
//! On one Redis server (or the master the sentinels name) that is one
//! channel, `{prefix}:bus`, with PUBLISH and SUBSCRIBE: one server carries
//! everything anyway.
//!
//! On a Redis Cluster a plain PUBLISH is copied to every node of the
//! cluster, so adding shards adds no pub/sub capacity. There the nodes use
//! Redis 7's sharded pub/sub instead: [`LANES`] shard channels
//! `{prefix}:bus:0` … `{prefix}:bus:15`, whose slots the cluster spreads
//! over its shards. A node publishes everything on the one lane its id
//! picks (SPUBLISH), and every node listens to all of them (SSUBSCRIBE):
//! each message is carried only by the shard owning its lane, so the nodes'
//! traffic is spread over the shards, while one node's messages stay on one
//! slot and arrive in the order sent, which gap detection relies on.

/// Shard channels of a Redis Cluster bus.
pub const LANES: usize = 16;

/// The channel of a bus on one Redis server.
pub fn single(prefix: &str) -> String {
    format!("{prefix}:bus")
}

/// Shard channel `lane` of a Redis Cluster bus.
pub fn lane(prefix: &str, lane: usize) -> String {
    format!("{prefix}:bus:{lane}")
}

/// Every shard channel of a Redis Cluster bus.
pub fn lanes(prefix: &str) -> Vec<String> {
    (0..LANES).map(|n| lane(prefix, n)).collect()
}

/// The lane `node` publishes on: the same for the node's whole life.
pub fn lane_of(node: &str) -> usize {
    let hash = node.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    });
    (hash % LANES as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lanes_are_distinct_and_nodes_spread_over_them() {
        let names = lanes("forum");
        assert_eq!(names.len(), LANES);
        assert_eq!(names[3], "forum:bus:3");
        let used: std::collections::HashSet<usize> =
            (0..200).map(|n| lane_of(&format!("{n:012x}"))).collect();
        assert_eq!(used.len(), LANES, "200 node ids use every lane");
        assert_eq!(lane_of("a1b2c3d4e5f6"), lane_of("a1b2c3d4e5f6"));
    }
}
