//! With `redis_url`: whether the Redis the nodes share answers, and how
//! many nodes listen on it.

use super::Finding;
use crate::cluster;
use crate::config::Settings;

/// With `redis_url`: whether Redis answers, and how many nodes listen.
pub(super) async fn check_redis(settings: &Settings) -> Option<Finding> {
    let config = crate::server::cluster_config(settings)?;
    let shown = cluster::describe_url(&config.redis_url);
    if let Err(problem) = cluster::check_target(&config) {
        return Some(Finding::fail(
            "redis",
            problem,
            "write redis_url as redis://[user:password@]host:port[/db] (rediss:// for TLS, redis+sentinel://host:port,.../master for Sentinel, rediss+sentinel:// for Sentinel over TLS, redis+cluster://host:port,... for a Redis Cluster, rediss+cluster:// over TLS); the TLS files as PEM",
        ));
    }
    let over_tls = if config.redis_url.starts_with("rediss") {
        ", over TLS (certificate verified)"
    } else {
        ""
    };
    Some(match cluster::probe(&config).await {
        Ok(probed) => {
            let master = probed
                .master
                .map(|master| format!(": the sentinels name master {master}, which"))
                .or(probed.topology.map(|topology| format!(", {topology},")))
                .unwrap_or_default();
            let found = format!(
                "Redis at {shown}{master} answers{over_tls}; {} flarum-ws node(s) listen on {}",
                probed.nodes, probed.channels
            );
            match probed.warning {
                Some((warning, fix)) => {
                    Finding::warn("redis", format!("{found}, but {warning}"), fix)
                }
                None => Finding::pass("redis", found),
            }
        }
        Err(problem) => Finding::fail(
            "redis",
            format!("cannot use the cluster's Redis: {problem}"),
            "start Redis (systemctl start redis-server) or fix redis_url (and the redis_ TLS files); without it the nodes serve only their own clients",
        ),
    })
}
