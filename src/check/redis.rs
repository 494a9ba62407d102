//! With `redis_url`: whether the Redis the nodes share answers, and how
//! many nodes listen on it.

use super::Finding;
use crate::cluster;
use crate::config::Settings;

/// With `redis_url`: whether Redis answers, and how many nodes listen.
pub(super) async fn check_redis(settings: &Settings) -> Option<Finding> {
    let url = settings.redis_url.as_ref()?.expose();
    let shown = cluster::describe_url(url);
    if let Err(problem) = cluster::check_url(url) {
        return Some(Finding::fail(
            "redis",
            problem,
            "write it as redis://[:password@]host:port[/db]",
        ));
    }
    Some(match cluster::probe(url, &settings.redis_prefix).await {
        Ok(nodes) => Finding::pass(
            "redis",
            format!(
                "Redis at {shown} answers; {nodes} flarum-ws node(s) listen on {}:bus",
                settings.redis_prefix
            ),
        ),
        Err(problem) => Finding::fail(
            "redis",
            format!("Redis at {shown} does not answer: {problem}"),
            "start Redis (systemctl start redis-server) or fix redis_url; without it the nodes serve only their own clients",
        ),
    })
}
