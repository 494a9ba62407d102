//! `check --live` on a cluster: the browser's node must hear the other
//! nodes, and the node the forum's API reached must tell them. Check stands
//! in for another node on the cluster's Redis
//! ([`crate::cluster::CheckNode`]) and shows both directions.

use std::time::Duration;

use serde_json::json;

use super::Finding;
use super::live::{Browsers, describe, events_url, next_frame, trigger};
use crate::cluster::{CheckNode, ClusterConfig, describe_url};
use crate::probe::{SignedClient, Stream};

/// How long a node may take to pass an event to the bus.
const RELAY_TIMEOUT: Duration = Duration::from_secs(5);

const SAME_BUS: &str = "every node needs the same redis_url and redis_prefix; look for \"Connected to Redis\" in each node's log (flarum-ws check on each node judges its Redis)";

/// The browser at `url`, subscribed to `channel`, gets an event published
/// on the bus by check standing in for another node; an event triggered
/// through `api` is published on the bus for the other nodes.
pub(super) async fn across_nodes(
    cluster: &ClusterConfig,
    ws: &mut tokio_tungstenite::WebSocketStream<Stream>,
    url: &str,
    api: &SignedClient,
    browsers: &Browsers,
    channel: &str,
) -> Finding {
    let bus = describe_url(&cluster.redis_url);
    let mut node = match CheckNode::join(cluster).await {
        Ok(node) => node,
        Err(problem) => {
            return Finding::fail(
                "live cluster",
                format!("could not join the cluster's Redis as another node would: {problem}"),
                SAME_BUS,
            );
        }
    };

    let frame = json!({"event": "check-from-another-node", "channel": channel, "data": "{}"});
    if let Err(problem) = node.send_event(channel, frame.to_string()).await {
        return Finding::fail(
            "live cluster",
            format!("could not publish on the cluster's Redis: {problem}"),
            SAME_BUS,
        );
    }
    match next_frame(ws).await {
        Some(frame) if frame["event"] == "check-from-another-node" => {}
        other => {
            return Finding::fail(
                "live cluster",
                format!(
                    "an event published on the cluster's Redis ({bus}) as another node would did not reach the browser at {url} (got {}): browsers on that node miss the events triggered on the others",
                    describe(other.as_ref())
                ),
                SAME_BUS,
            );
        }
    }

    if let Err(mut findings) = trigger(api, browsers, channel, "check-for-other-nodes").await {
        return findings.remove(0);
    }
    match node.heard_event_for(channel, RELAY_TIMEOUT).await {
        Some(sender) => Finding::pass(
            "live cluster",
            format!(
                "the browser's node hears the other nodes (an event published on {bus} reached it), and node {sender}, reached by the forum at {}, published the forum's event there for them",
                events_url(api)
            ),
        ),
        None => Finding::fail(
            "live cluster",
            format!(
                "the node the forum reached at {} did not publish the forum's event on {bus} within {} s: browsers on the other nodes would not get it",
                events_url(api),
                RELAY_TIMEOUT.as_secs()
            ),
            SAME_BUS,
        ),
    }
}
