//! How a node reaches its Redis: the URL (`redis://` or `rediss://`, with
//! an ACL user and password, `redis+sentinel://` naming the sentinels and
//! the master, or `redis+cluster://` naming some nodes of a Redis Cluster),
//! a private CA and a client certificate for TLS, and what each way of
//! failing means for the admin. `serve` and `check` build their [`Target`]
//! here, so they fail alike and say the same.

use std::time::Duration;

use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::sentinel::{
    SentinelClient, SentinelClientBuilder, SentinelNodeConnectionInfo, SentinelServerType,
};
use redis::{
    ClientTlsConfig, ConnectionAddr, ErrorKind, IntoConnectionInfo, RedisError, TlsCertificates,
    TlsMode,
};

use super::ClusterConfig;

/// Time allowed for connecting and for each command.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);

/// The TLS files for a `rediss://` Redis, as configured.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RedisTls {
    /// PEM CA certificate trusted instead of the system's roots.
    pub ca_file: Option<String>,
    /// PEM client certificate and its key, for a Redis that asks for one.
    pub client_cert: Option<String>,
    pub client_key: Option<String>,
}

impl RedisTls {
    fn is_set(&self) -> bool {
        self.ca_file.is_some() || self.client_cert.is_some() || self.client_key.is_some()
    }
}

/// The Redis URL without its password, for logs.
pub fn describe(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((_, host)) => format!("{scheme}://<credentials>@{host}"),
            None => format!("{scheme}://{rest}"),
        },
        None => url.to_owned(),
    }
}

fn read_pem(path: &str, setting: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|error| format!("cannot read {setting} {path}: {error}"))
}

/// Where a node's Redis connections go: one server, whichever server the
/// sentinels name master at the time of connecting (so that after a
/// failover the next connection goes to the new master), or a Redis
/// Cluster, whose client follows the shards' masters itself.
pub enum Target {
    Direct(redis::Client),
    Sentinel {
        sentinels: tokio::sync::Mutex<SentinelClient>,
        master: String,
    },
    /// The cluster nodes named in the URL (`redis://[credentials@]host:port`
    /// each, `rediss://` over TLS); the client learns the others from them.
    Cluster {
        seeds: Vec<String>,
        /// The CA and client certificate files.
        tls: RedisTls,
    },
}

impl Target {
    /// A client for the server to connect to now (not for a Redis
    /// Cluster: see [`Target::cluster_client`]).
    pub async fn client(&self) -> redis::RedisResult<redis::Client> {
        match self {
            Target::Direct(client) => Ok(client.clone()),
            Target::Sentinel { sentinels, .. } => sentinels.lock().await.async_get_client().await,
            Target::Cluster { .. } => Err(RedisError::from((
                ErrorKind::InvalidClientConfig,
                "a Redis Cluster has no single server to connect to",
            ))),
        }
    }

    /// Whether this is a Redis Cluster (sharded pub/sub).
    pub fn is_cluster(&self) -> bool {
        matches!(self, Target::Cluster { .. })
    }

    /// A Redis Cluster client, `customise`d (RESP3 and a push sender for
    /// the subscriber), with this module's timeouts.
    pub fn cluster_client(
        &self,
        customise: impl FnOnce(ClusterClientBuilder) -> ClusterClientBuilder,
    ) -> redis::RedisResult<ClusterClient> {
        let Target::Cluster { seeds, tls } = self else {
            return Err(RedisError::from((
                ErrorKind::InvalidClientConfig,
                "not a Redis Cluster",
            )));
        };
        let mut builder = ClusterClient::builder(seeds.iter().map(String::as_str))
            .connection_timeout(COMMAND_TIMEOUT)
            .response_timeout(COMMAND_TIMEOUT)
            .retries(1);
        let certificates = tls_certificates(tls).map_err(|error| {
            RedisError::from((ErrorKind::InvalidClientConfig, "TLS files", error))
        })?;
        if let Some(certificates) = certificates {
            builder = builder.certs(certificates);
        }
        customise(builder).build()
    }

    /// The master's name, for a sentinel setup.
    pub fn master_name(&self) -> Option<&str> {
        match self {
            Target::Direct(_) | Target::Cluster { .. } => None,
            Target::Sentinel { master, .. } => Some(master),
        }
    }
}

/// `redis+sentinel://[[user]:password@]host:port[,host:port…]/master[/db]`:
/// the sentinels' addresses, the master's name, and the master's
/// credentials and database. The sentinels themselves are asked without a
/// password. `rediss+sentinel://` speaks TLS to the sentinels and to the
/// master, checked against `tls` (or the system's roots).
fn sentinel_target(url: &str, tls: &RedisTls) -> Result<Target, String> {
    let bad = |why: &str| {
        format!(
            "invalid redis_url {}: {why}; write redis+sentinel://[:password@]host:port[,host:port...]/master-name[/db] (rediss+sentinel:// for TLS)",
            describe(url)
        )
    };
    let (over_tls, rest) = match url.split_once("://") {
        Some(("redis+sentinel", rest)) => (false, rest),
        Some(("rediss+sentinel", rest)) => (true, rest),
        _ => return Err(bad("not redis+sentinel://")),
    };
    let (credentials, rest) = match rest.rsplit_once('@') {
        Some((credentials, rest)) => (Some(credentials), rest),
        None => (None, rest),
    };
    let (hosts, path) = rest.split_once('/').ok_or_else(|| bad("no master name"))?;
    let mut path = path.split('/');
    let master = path
        .next()
        .filter(|name| !name.is_empty())
        .ok_or_else(|| bad("no master name"))?;
    let db = path.next().unwrap_or("0");
    let hosts: Vec<&str> = hosts.split(',').filter(|host| !host.is_empty()).collect();
    if hosts.is_empty() {
        return Err(bad("no sentinel address"));
    }
    // The master's settings, read by the URL parser the plain form uses.
    let auth = credentials.map(|c| format!("{c}@")).unwrap_or_default();
    let master_info = format!("redis://{auth}sentinel-master/{db}")
        .into_connection_info()
        .map_err(|error| bad(&error.to_string()))?;
    let sentinels = if over_tls {
        tls_sentinels(&hosts, master, master_info.redis_settings(), tls)
            .map_err(|error| bad(&error))?
    } else {
        let node = SentinelNodeConnectionInfo::default()
            .set_redis_connection_info(master_info.redis_settings().clone());
        let addresses = hosts.iter().map(|host| format!("redis://{host}")).collect();
        SentinelClient::build(addresses, master, Some(node), SentinelServerType::Master)
            .map_err(|error| bad(&error.to_string()))?
    };
    Ok(Target::Sentinel {
        sentinels: tokio::sync::Mutex::new(sentinels),
        master: master.to_owned(),
    })
}

/// Sentinels at `hosts` reached over TLS, naming a master reached over TLS
/// with `redis`'s credentials and database; both checked against `tls`.
fn tls_sentinels(
    hosts: &[&str],
    master: &str,
    redis: &redis::RedisConnectionInfo,
    tls: &RedisTls,
) -> Result<SentinelClient, String> {
    let mut addresses = Vec::new();
    for host in hosts {
        let (name, port) = host
            .rsplit_once(':')
            .and_then(|(name, port)| Some((name, port.parse::<u16>().ok()?)))
            .ok_or_else(|| format!("{host} is not host:port"))?;
        addresses.push(ConnectionAddr::TcpTls {
            host: name.trim_matches(['[', ']']).to_owned(),
            port,
            insecure: false,
            tls_params: None,
        });
    }
    let mut builder = SentinelClientBuilder::new(addresses, master, SentinelServerType::Master)
        .map_err(|error| error.to_string())?
        .set_client_to_sentinel_tls_mode(TlsMode::Secure)
        .set_client_to_redis_tls_mode(TlsMode::Secure)
        .set_client_to_redis_db(redis.db());
    if let Some(user) = redis.username() {
        builder = builder.set_client_to_redis_username(user);
    }
    if let Some(password) = redis.password() {
        builder = builder.set_client_to_redis_password(password);
    }
    // One set of files for both: the sentinels and the master they name.
    if let Some(certificates) = tls_certificates(tls)? {
        builder = builder.set_client_to_sentinel_certificates(certificates);
    }
    if let Some(certificates) = tls_certificates(tls)? {
        builder = builder.set_client_to_redis_certificates(certificates);
    }
    builder.build().map_err(|error| match error.kind() {
        ErrorKind::InvalidClientConfig => format!(
            "the TLS files for Redis are not usable (redis_ca_file, redis_client_cert, redis_client_key: PEM expected): {error}"
        ),
        _ => error.to_string(),
    })
}

/// `redis+cluster://[[user]:password@]host:port[,host:port…]`: some nodes
/// of a Redis Cluster (one is enough; more are tried in turn), and the
/// credentials every node takes; `rediss+cluster://` over TLS, checked
/// against `tls` (or the system's roots).
fn cluster_target(url: &str, tls: &RedisTls) -> Result<Target, String> {
    let bad = |why: &str| {
        format!(
            "invalid redis_url {}: {why}; write redis+cluster://[user:password@]host:port[,host:port...] (rediss+cluster:// for TLS)",
            describe(url)
        )
    };
    let (scheme, rest) = match url.split_once("://") {
        Some(("redis+cluster", rest)) => ("redis", rest),
        Some(("rediss+cluster", rest)) => ("rediss", rest),
        _ => return Err(bad("not redis+cluster://")),
    };
    let (credentials, hosts) = match rest.rsplit_once('@') {
        Some((credentials, hosts)) => (Some(credentials), hosts),
        None => (None, rest),
    };
    let hosts = hosts.strip_suffix('/').unwrap_or(hosts);
    if hosts.contains('/') {
        return Err(bad(
            "a Redis Cluster has only database 0: leave the /db off",
        ));
    }
    let auth = credentials.map(|c| format!("{c}@")).unwrap_or_default();
    let seeds: Vec<String> = hosts
        .split(',')
        .filter(|host| !host.is_empty())
        .map(|host| format!("{scheme}://{auth}{host}"))
        .collect();
    if seeds.is_empty() {
        return Err(bad("no node address"));
    }
    for seed in &seeds {
        seed.as_str()
            .into_connection_info()
            .map_err(|error| bad(&error.to_string()))?;
    }
    // Read now, so that a missing or unreadable file is named at startup.
    tls_certificates(tls)?;
    Ok(Target::Cluster {
        seeds,
        tls: tls.clone(),
    })
}

/// Where `config`'s Redis is; the error names the setting to fix.
pub fn target(config: &ClusterConfig) -> Result<Target, String> {
    let url = config.redis_url.as_str();
    let scheme = url.split_once("://").map_or("", |(scheme, _)| scheme);
    let build: fn(&str, &RedisTls) -> Result<Target, String> = match scheme {
        "redis+cluster" | "rediss+cluster" => cluster_target,
        "redis+sentinel" | "rediss+sentinel" => sentinel_target,
        _ => return client(config).map(Target::Direct),
    };
    if !scheme.starts_with("rediss") && config.tls.is_set() {
        return Err(format!(
            "redis_ca_file, redis_client_cert and redis_client_key are for TLS, but redis_url is {scheme}://: write {}://",
            scheme.replacen("redis", "rediss", 1)
        ));
    }
    build(url, &config.tls)
}

/// The configured TLS files, read; `None` when none is set.
fn tls_certificates(tls: &RedisTls) -> Result<Option<TlsCertificates>, String> {
    if !tls.is_set() {
        return Ok(None);
    }
    let client_tls = match (&tls.client_cert, &tls.client_key) {
        (Some(cert), Some(key)) => Some(ClientTlsConfig {
            client_cert: read_pem(cert, "redis_client_cert")?,
            client_key: read_pem(key, "redis_client_key")?,
        }),
        (None, None) => None,
        _ => {
            return Err(
                "redis_client_cert and redis_client_key go together: set both or neither".into(),
            );
        }
    };
    let root_cert = match &tls.ca_file {
        Some(path) => Some(read_pem(path, "redis_ca_file")?),
        None => None,
    };
    Ok(Some(TlsCertificates {
        client_tls,
        root_cert,
    }))
}

/// The Redis client for one server; the error names the setting to fix.
fn client(config: &ClusterConfig) -> Result<redis::Client, String> {
    let url = config.redis_url.as_str();
    let invalid = |error: RedisError| format!("invalid redis_url {}: {error}", describe(url));
    if !config.tls.is_set() {
        return redis::Client::open(url).map_err(invalid);
    }
    if !url.starts_with("rediss://") {
        return Err(format!(
            "redis_ca_file, redis_client_cert and redis_client_key are for TLS, but redis_url {} is not rediss://",
            describe(url)
        ));
    }
    let certificates = tls_certificates(&config.tls)?.unwrap_or(TlsCertificates {
        client_tls: None,
        root_cert: None,
    });
    redis::Client::build_with_tls(url, certificates)
    .map_err(|error| match error.kind() {
        ErrorKind::InvalidClientConfig => format!(
            "the TLS files for Redis are not usable (redis_ca_file, redis_client_cert, redis_client_key: PEM expected): {error}"
        ),
        _ => invalid(error),
    })
}

const PLAIN_PORT: &str = "the port in redis_url speaks plain Redis, not TLS: use redis://, or Redis's TLS port (tls-port in redis.conf)";
const MAYBE_PLAIN_PORT: &str =
    "if that port speaks plain Redis, use redis://, or Redis's TLS port (tls-port in redis.conf)";

/// What a failure to reach or use Redis means, in the admin's words.
pub fn explain(error: &RedisError, config: &ClusterConfig) -> String {
    let shown = describe(&config.redis_url);
    let text = error.to_string();
    let tls = config.redis_url.starts_with("rediss");
    let hint = if matches!(
        error.kind(),
        ErrorKind::MasterNameNotFoundBySentinel | ErrorKind::EmptySentinelList
    ) {
        format!(
            "no sentinel answered with a master of that name ({text}): check the sentinels' addresses and the master's name after the last / in redis_url (sentinel monitor NAME in sentinel.conf)"
        )
    } else if text.contains("cluster support disabled") {
        "this Redis is not a Redis Cluster (cluster-enabled is off): write redis://host:port (rediss:// for TLS) instead of redis+cluster://".to_owned()
    } else if error.kind() == ErrorKind::AuthenticationFailed
        || text.contains("WRONGPASS")
        || text.contains("invalid username-password")
    {
        "Redis refused the user name or password in redis_url (WRONGPASS): fix them in the URL (rediss://user:password@host:port)".to_owned()
    } else if text.contains("NOAUTH") {
        "Redis asks for a password: put it in redis_url (redis://:password@host:port, or user:password for an ACL user)".to_owned()
    } else if text.to_ascii_lowercase().contains("noperm")
        && config.redis_url.contains("+cluster://")
    {
        format!(
            "the Redis user in redis_url may not run what a node needs ({text}): allow the sharded pub/sub commands and the cluster's lanes in its ACL (+ping +cluster|info +cluster|nodes +cluster|slots +cluster|shards +spublish +ssubscribe +pubsub &{}:bus:*)",
            config.prefix
        )
    } else if text.to_ascii_lowercase().contains("noperm") {
        format!(
            "the Redis user in redis_url may not run what a node needs ({text}): allow PING, PUBLISH, SUBSCRIBE and PUBSUB on the cluster's channel in its ACL (+ping +publish +subscribe +pubsub &{}:bus)",
            config.prefix
        )
    } else if tls && (text.contains("NotValidForName") || text.contains("not valid for name")) {
        format!(
            "Redis's TLS certificate is not for the host in redis_url ({text}): use the name it was issued for"
        )
    } else if tls && (text.contains("UnknownIssuer") || text.contains("invalid peer certificate")) {
        format!(
            "Redis's TLS certificate is not trusted ({text}): set redis_ca_file to the CA that signed it{}",
            if config.tls.ca_file.is_some() {
                " (the one set did not)"
            } else {
                ""
            }
        )
    } else if tls
        && (text.contains("InvalidContentType")
            || text.contains("corrupt message")
            || text.contains("received corrupt"))
    {
        PLAIN_PORT.to_owned()
    } else if tls && text.contains("timed out") {
        format!("no TLS answer ({text}); {MAYBE_PLAIN_PORT}")
    } else if !tls
        && (text.contains("reset by peer")
            || text.contains("broken pipe")
            || text.contains("Connection reset"))
    {
        format!(
            "the connection was cut at once ({text}): if that port is Redis's TLS port, write rediss://"
        )
    } else if tls && text.contains("fatal alert: UnknownCA") {
        "Redis did not accept the client certificate in redis_client_cert: it must be signed by a CA in Redis's tls-ca-cert-file, with any intermediate certificates in the same file after it".to_owned()
    } else if text.contains("CertificateRequired") || text.contains("certificate required") {
        "Redis asks for a client certificate: set redis_client_cert and redis_client_key".to_owned()
    } else {
        text
    };
    format!("Redis at {shown}: {hint}")
}

/// What `check` learnt of the cluster's Redis.
#[derive(Debug, Default)]
pub struct Probed {
    /// Nodes listening on the cluster's channel.
    pub nodes: usize,
    /// With Sentinel: the master's name and where the sentinels say it is.
    pub master: Option<String>,
    /// With a Redis Cluster: its shards and state, as it reports them.
    pub topology: Option<String>,
    /// The channels the nodes talk on.
    pub channels: String,
    /// Works, but not as the admin likely meant: what, and the fix.
    pub warning: Option<(String, String)>,
}

/// The probe message: the nodes ignore it.
pub(super) fn probe_message() -> String {
    let probe = super::bus::Envelope {
        node: "check".into(),
        seq: None,
        replay: false,
        message: super::bus::Message::Probe,
    };
    serde_json::to_string(&probe).unwrap_or_default()
}

/// Connects to Redis as a node would and answers how many nodes listen on
/// the cluster's channel (for `flarum-ws check`): PING, PUBSUB NUMSUB, then
/// SUBSCRIBE and PUBLISH (a probe the nodes ignore) on the channel, so a
/// user whose ACL forbids what a node does is found here, not by `serve`.
/// A Redis Cluster is asked its own state and shards, and the same with
/// the sharded commands on every lane.
pub async fn probe(config: &ClusterConfig) -> Result<Probed, String> {
    let target = target(config)?;
    let channel = super::channels::single(&config.prefix);
    let query = async {
        if target.is_cluster() {
            return super::sharded::probe(&target, &config.prefix).await;
        }
        let client = target.client().await?;
        let master = target
            .master_name()
            .map(|name| format!("{name} at {}", client.get_connection_info().addr()));
        let mut connection = client.get_multiplexed_async_connection().await?;
        let _: String = redis::cmd("PING").query_async(&mut connection).await?;
        let counts: Vec<(String, usize)> = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(&channel)
            .query_async(&mut connection)
            .await?;
        let mut listener = client.get_async_pubsub().await?;
        listener.subscribe(&channel).await?;
        let _: usize = redis::cmd("PUBLISH")
            .arg(&channel)
            .arg(probe_message())
            .query_async(&mut connection)
            .await?;
        // A node of a Redis Cluster answers all of this too.
        let info: String = redis::cmd("INFO")
            .arg("cluster")
            .query_async(&mut connection)
            .await
            .unwrap_or_default();
        let warning = info.contains("cluster_enabled:1").then(|| {
            (
                "this Redis is a node of a Redis Cluster: with redis:// every flarum-ws node must use this one server, its pub/sub is copied to every cluster node, and a failover of this server stops the bus".to_owned(),
                "write redis_url as redis+cluster://host:port[,host:port...] to spread the bus over the shards and follow failovers".to_owned(),
            )
        });
        Ok::<_, RedisError>(Probed {
            nodes: counts.first().map_or(0, |(_, n)| *n),
            master,
            topology: None,
            channels: channel.clone(),
            warning,
        })
    };
    let failed = match tokio::time::timeout(COMMAND_TIMEOUT, query).await {
        Ok(Ok(probed)) => return Ok(probed),
        Ok(Err(error)) => explain(&error, config),
        Err(_) => format!(
            "Redis at {}: no answer within {} s",
            describe(&config.redis_url),
            COMMAND_TIMEOUT.as_secs()
        ),
    };
    // TLS failed: ask the port itself whether it speaks plain Redis.
    if let Some(plain) = config.redis_url.strip_prefix("rediss://")
        && answers_plain(&format!("redis://{plain}")).await
    {
        return Err(format!(
            "Redis at {}: {PLAIN_PORT}",
            describe(&config.redis_url)
        ));
    }
    Err(failed)
}

/// Whether `url` answers a plain PING (or refuses it as Redis does: a
/// password wanted is an answer too).
async fn answers_plain(url: &str) -> bool {
    let Ok(client) = redis::Client::open(url) else {
        return false;
    };
    let ping = async {
        let mut connection = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING")
            .query_async::<String>(&mut connection)
            .await
    };
    match tokio::time::timeout(COMMAND_TIMEOUT, ping).await {
        Ok(Ok(_)) => true,
        Ok(Err(error)) => error.kind() == ErrorKind::AuthenticationFailed || error.code().is_some(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_not_shown() {
        assert_eq!(
            describe("rediss://ws:hunter2@redis.example:6380/0"),
            "rediss://<credentials>@redis.example:6380/0"
        );
        assert_eq!(describe("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
    }

    #[test]
    fn tls_files_need_rediss_and_go_in_pairs() {
        let config = |url: &str, tls: RedisTls| ClusterConfig {
            redis_url: url.into(),
            prefix: "p".into(),
            tls,
        };
        let ca = RedisTls {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..RedisTls::default()
        };
        let error = client(&config("redis://127.0.0.1:6379", ca.clone())).unwrap_err();
        let error_of = |url: &str| match target(&config(url, RedisTls::default())) {
            Ok(_) => String::new(),
            Err(error) => error,
        };
        assert!(error_of("redis+sentinel://127.0.0.1:26379").contains("no master name"));
        assert!(error_of("redis+sentinel:///mymaster").contains("no sentinel address"));
        assert_eq!(
            error_of("redis+sentinel://:pw@127.0.0.1:26379,127.0.0.1:26380/mymaster/2"),
            ""
        );
        assert_eq!(error_of("rediss+sentinel://127.0.0.1:26379/m"), "");
        assert_eq!(
            error_of("redis+cluster://:pw@127.0.0.1:7001,127.0.0.1:7002/"),
            ""
        );
        assert_eq!(error_of("rediss+cluster://127.0.0.1:7001"), "");
        assert!(error_of("redis+cluster://127.0.0.1:7001/2").contains("only database 0"));
        assert!(error_of("redis+cluster://").contains("no node address"));
        let with_ca = |url: &str| match target(&config(url, ca.clone())) {
            Ok(_) => String::new(),
            Err(error) => error,
        };
        assert!(with_ca("redis+cluster://127.0.0.1:7001").contains("write rediss+cluster://"));
        assert!(with_ca("redis+sentinel://127.0.0.1:1/m").contains("write rediss+sentinel://"));
        assert!(error_of("rediss+sentinel://127.0.0.1/m").contains("is not host:port"));
        assert!(error.contains("is not rediss://"), "{error}");
        let error = client(&config("rediss://127.0.0.1:6379", ca)).unwrap_err();
        assert!(
            error.contains("cannot read redis_ca_file /nonexistent/ca.pem"),
            "{error}"
        );
        let half = RedisTls {
            client_cert: Some("/x".into()),
            ..RedisTls::default()
        };
        let error = client(&config("rediss://127.0.0.1:6379", half)).unwrap_err();
        assert!(error.contains("go together"), "{error}");
    }
}
