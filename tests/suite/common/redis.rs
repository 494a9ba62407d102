//! A real redis-server on a free loopback port, for the tests that need
//! one; killed when dropped.

use std::process::Command;

use super::process::free_port;

/// A redis-server on a free loopback port, killed when dropped.
pub struct RedisServer {
    child: std::process::Child,
    pub port: u16,
    /// Its TLS port, when started with [`RedisServer::start_tls`].
    pub tls_port: Option<u16>,
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
        let child = Command::new("redis-server")
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
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        for listening in std::iter::once(port).chain(tls_port) {
            while std::net::TcpStream::connect(("127.0.0.1", listening)).is_err() {
                assert!(
                    std::time::Instant::now() < deadline,
                    "redis-server did not start"
                );
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
        Self {
            child,
            port,
            tls_port,
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
