//! A real redis-server on a free loopback port, for the tests that need
//! one; killed when dropped.

use std::process::Command;

use super::process::{free_port, wait_until_listening};

/// A redis-server on a free loopback port, killed when dropped.
pub struct RedisServer {
    child: std::process::Child,
    pub port: u16,
    /// Its TLS port, when started with [`RedisServer::start_tls`].
    pub tls_port: Option<u16>,
    /// Its folder: a replica writes the copy it receives there.
    _dir: tempfile::TempDir,
}

impl RedisServer {
    pub fn start() -> Self {
        Self::start_with(&[], None)
    }

    /// Debian's redis-server with a TLS port too, its certificate `leaf`
    /// from `pki`, asking for the password `password`; with
    /// `client_certificates`, a TLS client must show a certificate `pki`'s
    /// root signed.
    pub fn start_tls(
        pki: &super::pki::Pki,
        leaf: &super::pki::Leaf,
        password: &str,
        client_certificates: bool,
    ) -> Self {
        let tls_port = free_port();
        let path = |p: &std::path::Path| p.display().to_string();
        let args = [
            "--tls-port".to_owned(),
            tls_port.to_string(),
            "--tls-cert-file".to_owned(),
            path(&leaf.full_chain),
            "--tls-key-file".to_owned(),
            path(&leaf.key),
            "--tls-ca-cert-file".to_owned(),
            path(&pki.root_pem),
            "--tls-auth-clients".to_owned(),
            if client_certificates { "yes" } else { "no" }.to_owned(),
            "--requirepass".to_owned(),
            password.to_owned(),
        ];
        Self::start_with(&args, Some(tls_port))
    }

    fn start_with(extra: &[String], tls_port: Option<u16>) -> Self {
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let child = Command::new("redis-server")
            .current_dir(dir.path())
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(extra)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server is needed (apt-get install redis-server)");
        let ports: Vec<u16> = std::iter::once(port).chain(tls_port).collect();
        wait_until_listening(&ports, "redis-server");
        Self {
            child,
            port,
            tls_port,
            _dir: dir,
        }
    }

    /// Runs one command as the default user (authenticated with `password`).
    pub fn command(&self, password: Option<&str>, args: &[&str]) -> String {
        let mut command = Command::new("redis-cli");
        command.args(["-p", &self.port.to_string()]);
        if let Some(password) = password {
            command.args(["--no-auth-warning", "-a", password]);
        }
        let output = command.args(args).output().expect("redis-cli");
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Three Redis Sentinels (Debian's redis-server in sentinel mode) watching
/// the master at `master_port` as `mymaster`, agreeing with a quorum of 2
/// and declaring it down after 1 s of silence; killed when dropped.
pub struct Sentinels {
    children: Vec<std::process::Child>,
    pub ports: Vec<u16>,
    /// redis-cli's flags to reach them (TLS).
    cli: Vec<String>,
    scheme: &'static str,
    _dir: tempfile::TempDir,
}

impl Sentinels {
    pub fn start(master_port: u16) -> Self {
        Self::start_with(master_port, None)
    }

    /// Sentinels that speak only TLS, to their clients and to the master
    /// (`tls-replication yes`), as `tls` says.
    pub fn start_tls(master_port: u16, tls: &TlsFiles) -> Self {
        Self::start_with(master_port, Some(tls))
    }

    fn start_with(master_port: u16, tls: Option<&TlsFiles>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut children = Vec::new();
        let mut ports = Vec::new();
        for n in 0..3 {
            let port = free_port();
            let listen = match tls {
                Some(tls) => format!("port 0\ntls-port {port}\n{}", tls.config_lines()),
                None => format!("port {port}\n"),
            };
            // Sentinel rewrites its file as it learns: one each, writable.
            let file = dir.path().join(format!("sentinel-{n}.conf"));
            std::fs::write(
                &file,
                format!(
                    "{listen}bind 127.0.0.1\nsentinel monitor mymaster 127.0.0.1 {master_port} 2\n\
                     sentinel down-after-milliseconds mymaster 1000\nsentinel failover-timeout mymaster 5000\n"
                ),
            )
            .unwrap();
            let child = Command::new("redis-server")
                .arg(&file)
                .arg("--sentinel")
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect("redis-server (in sentinel mode)");
            children.push(child);
            ports.push(port);
        }
        wait_until_listening(&ports, "a sentinel");
        Self {
            children,
            ports,
            cli: tls.map(TlsFiles::cli_args).unwrap_or_default(),
            scheme: if tls.is_some() {
                "rediss+sentinel"
            } else {
                "redis+sentinel"
            },
            _dir: dir,
        }
    }

    /// `redis+sentinel://` (`rediss+sentinel://`) naming the three and the
    /// master.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        format!("{}://{}/mymaster", self.scheme, hosts.join(","))
    }

    fn ask(&self, args: &[&str]) -> String {
        Command::new("redis-cli")
            .args(&self.cli)
            .args(["-p", &self.ports[0].to_string()])
            .args(args)
            .output()
            .map(|output| String::from_utf8_lossy(&output.stdout).into_owned())
            .unwrap_or_default()
    }

    /// Whether the first sentinel has found a replica of the master.
    pub fn know_a_replica(&self) -> bool {
        self.ask(&["SENTINEL", "replicas", "mymaster"])
            .contains("slave")
    }

    /// The port the sentinels name master now.
    pub fn master_port(&self) -> Option<u16> {
        let output = self.ask(&["SENTINEL", "get-master-addr-by-name", "mymaster"]);
        output.lines().nth(1)?.trim().parse().ok()
    }
}

impl Drop for Sentinels {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The files of a Redis that speaks only TLS and asks its clients (and
/// replicas, and sentinels) for a certificate from the same CA.
pub struct TlsFiles {
    cert: String,
    key: String,
    ca: String,
}

impl TlsFiles {
    /// `leaf` (with its chain) as the server's and its own client
    /// certificate, `pki`'s root as the CA.
    pub fn new(pki: &super::pki::Pki, leaf: &super::pki::Leaf) -> Self {
        Self {
            cert: leaf.full_chain.display().to_string(),
            key: leaf.key.display().to_string(),
            ca: pki.root_pem.display().to_string(),
        }
    }

    /// redis-server's TLS settings, as (name, value).
    fn settings(&self) -> [(&str, &str); 5] {
        [
            ("tls-cert-file", &self.cert),
            ("tls-key-file", &self.key),
            ("tls-ca-cert-file", &self.ca),
            ("tls-auth-clients", "yes"),
            ("tls-replication", "yes"),
        ]
    }

    /// The settings as lines of a config file.
    fn config_lines(&self) -> String {
        self.settings()
            .iter()
            .map(|(name, value)| format!("{name} {value}\n"))
            .collect()
    }

    fn cli_args(&self) -> Vec<String> {
        [
            "--tls", "--cacert", &self.ca, "--cert", &self.cert, "--key", &self.key,
        ]
        .map(str::to_owned)
        .to_vec()
    }
}

impl RedisServer {
    /// A redis-server speaking only TLS on `port` (its plain port closed),
    /// a replica of the TLS port `replica_of` when given.
    pub fn start_tls_only(tls: &TlsFiles, replica_of: Option<u16>) -> Self {
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let mut command = Command::new("redis-server");
        command.current_dir(dir.path());
        command.args(["--port", "0", "--tls-port", &port.to_string()]);
        command.args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]);
        for (name, value) in tls.settings() {
            command.args([format!("--{name}").as_str(), value]);
        }
        if let Some(master) = replica_of {
            command.args(["--replicaof", "127.0.0.1", &master.to_string()]);
        }
        let child = command
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server is needed (apt-get install redis-server)");
        wait_until_listening(&[port], "redis-server (TLS only)");
        Self {
            child,
            port,
            tls_port: Some(port),
            _dir: dir,
        }
    }

    /// A replica of the Redis at `master_port`.
    pub fn start_replica_of(master_port: u16) -> Self {
        Self::start_with(
            &[
                "--replicaof".to_owned(),
                "127.0.0.1".to_owned(),
                master_port.to_string(),
            ],
            None,
        )
    }

    /// Kills the server at once, as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
