//! Running the real `flarum-ws` binary as an admin would.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `flarum-ws` in `dir` with a clean environment (only PATH kept).
pub fn flarum_ws(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_flarum-ws"));
    command
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap());
    command
}

/// Runs `command` to its end: its exit code (-1 when a signal ended it),
/// stdout and stderr as text.
pub fn run(command: &mut Command) -> (i32, String, String) {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?} did not run: {e}"));
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Runs `command`, asserts it succeeded (showing its stderr when not) and
/// gives its stdout.
pub fn succeed(command: &mut Command) -> String {
    let (code, stdout, stderr) = run(command);
    assert_eq!(code, 0, "{command:?}: {stderr}");
    stdout
}

/// A running `flarum-ws serve` and the address it printed.
pub struct Running {
    pub child: Child,
    pub port: u16,
    log: std::sync::mpsc::Receiver<String>,
    /// The lines before "Listening on", given back with the rest at exit.
    startup: Vec<String>,
}

pub fn start(command: &mut Command) -> Running {
    if command.get_args().next().is_none() {
        command.arg("serve");
    }
    let mut child = command.stderr(Stdio::piped()).spawn().expect("spawn");
    let stderr = child.stderr.take().unwrap();
    let (tx, log) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        if let Ok(line) = log.recv_timeout(Duration::from_millis(100)) {
            if let Some(rest) = line.split("Listening on ").nth(1) {
                let address = rest.split_whitespace().next().unwrap();
                let port = address.rsplit(':').next().unwrap().parse().unwrap();
                seen.push(line);
                return Running {
                    child,
                    port,
                    log,
                    startup: seen,
                };
            }
            seen.push(line);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("server did not start; log: {seen:?}");
}

impl Running {
    /// Sends a signal (`TERM`, `HUP`...) to the server, as an admin would with kill.
    pub fn signal(&self, name: &str) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args([&format!("-{name}"), &pid])
            .status()
            .unwrap();
        assert!(sent.success(), "kill -{name} {pid}");
    }

    /// Sends SIGTERM, expects a clean exit (code 0) and returns the log.
    pub fn stop_cleanly(&mut self) -> Vec<String> {
        self.signal("TERM");
        let (code, log) = self.lines_until_exit();
        assert_eq!(code, 0, "{log:?}");
        log
    }

    /// The next log line, waiting up to `wait`.
    pub fn next_line(&mut self, wait: Duration) -> Option<String> {
        self.log.recv_timeout(wait).ok()
    }

    /// Waits up to `limit` for a log line containing `needle`; gives the
    /// lines read on the way, that one last.
    pub fn wait_for_line(&mut self, needle: &str, limit: Duration) -> Vec<String> {
        let deadline = Instant::now() + limit;
        let mut seen = Vec::new();
        while Instant::now() < deadline {
            if let Some(line) = self.next_line(Duration::from_millis(200)) {
                let found = line.contains(needle);
                seen.push(line);
                if found {
                    return seen;
                }
            }
        }
        panic!("no line with {needle:?} within {limit:?}: {seen:#?}");
    }

    pub fn lines_until_exit(&mut self) -> (i32, Vec<String>) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                std::thread::sleep(Duration::from_millis(100));
                let mut lines = std::mem::take(&mut self.startup);
                lines.extend(self.log.try_iter());
                return (status.code().unwrap_or(-1), lines);
            }
            assert!(Instant::now() < deadline, "server did not exit");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            // The server's side of a failed test: the lines before the
            // failure are what tells a crash from a slow client.
            const LAST_LINES: usize = 200;
            std::thread::sleep(Duration::from_millis(100));
            let mut lines = std::mem::take(&mut self.startup);
            lines.extend(self.log.try_iter());
            let skipped = lines.len().saturating_sub(LAST_LINES);
            eprintln!(
                "server (pid {}) log, last {} line(s):",
                self.child.id(),
                lines.len() - skipped
            );
            for line in &lines[skipped..] {
                eprintln!("  {line}");
            }
        }
    }
}

/// Waits (10 s at most) until something accepts connections on each of
/// `ports` on loopback: a server `what` just started.
pub fn wait_until_listening(ports: &[u16], what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    for &port in ports {
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "{what} did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A free loopback port (bound and released; fine for tests on one machine).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A browser tab: pusher-js `version` running tests/conformance/forum-client.js,
/// subscribed to a channel and waiting for one event. With `tls_ca`, it
/// connects with wss to `localhost`, trusting that CA.
pub struct BrowserTab {
    pub child: Child,
    stdout: BufReader<std::process::ChildStdout>,
}

impl BrowserTab {
    pub fn open(
        version: &str,
        port: u16,
        key: &str,
        channel: &str,
        event: &str,
        tls_ca: Option<&Path>,
    ) -> Self {
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance/forum-client.js");
        let mut command = Command::new("node");
        command
            .arg(script)
            .args([version, &port.to_string(), key, channel, event]);
        if let Some(ca) = tls_ca {
            command
                .env("FORCE_TLS", "1")
                .env("WS_HOST", "localhost")
                .env("NODE_EXTRA_CA_CERTS", ca);
        }
        let mut child = command
            .stdout(Stdio::piped())
            .spawn()
            .expect("node is needed for these tests");
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Self { child, stdout }
    }

    /// The next line the tab printed (`subscribed`, then the event's data).
    pub fn line(&mut self) -> String {
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        line.trim().to_owned()
    }
}

/// Resident memory of process `pid`, in KiB (from /proc/PID/status).
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

/// Each JSON line a child prints on `stdout`, in order, read by a thread.
pub fn json_lines(
    stdout: std::process::ChildStdout,
) -> std::sync::mpsc::Receiver<serde_json::Value> {
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(value) = serde_json::from_str(&line) {
                let _ = tx.send(value);
            }
        }
    });
    lines
}

/// A plain HTTP/1.0 `GET` on a fresh connection: (status, body); status 0
/// when nothing listens.
pub fn http_get(port: u16, path: &str) -> (u16, String) {
    http_get_with(port, path, "")
}

/// [`http_get`] with extra header lines (each ending in `\r\n`).
pub fn http_get_with(port: u16, path: &str, headers: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return (0, String::new());
    };
    let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n{headers}\r\n");
    let mut response = Vec::new();
    if stream.write_all(request.as_bytes()).is_err() || stream.read_to_end(&mut response).is_err() {
        return (0, String::new());
    }
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    (status, body.to_owned())
}
