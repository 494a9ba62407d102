//! An idle browser tab (tests/conformance/idle-tab.js): pusher-js left alone
//! after subscribing, as a forum page is while its reader reads. What it
//! prints is what a user would notice: every change of connection state (a
//! reconnect), the subscription, and events.

use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use serde_json::Value;

pub struct IdleTab {
    child: Child,
    /// Kept open: the tab ends when its stdin closes.
    _stdin: ChildStdin,
    lines: Receiver<Value>,
}

impl IdleTab {
    /// pusher-js `version` on `port` with `key`, subscribed to `channel`,
    /// printing each `event`; `origin` is the Origin header a forum page
    /// sends, when the server needs one.
    pub fn open(
        version: &str,
        port: u16,
        key: &str,
        channel: &str,
        event: &str,
        origin: Option<&str>,
    ) -> Self {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance/idle-tab.js");
        let mut command = Command::new("node");
        command
            .arg(script)
            .args([version, &port.to_string(), key, channel, event]);
        if let Some(origin) = origin {
            command.env("ORIGIN", origin);
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("node and tests/conformance's npm packages");
        let stdin = child.stdin.take().unwrap();
        let lines = super::process::json_lines(child.stdout.take().unwrap());
        Self {
            child,
            _stdin: stdin,
            lines,
        }
    }

    /// Lines up to and including the first with `field`, within 10 s.
    pub fn until(&self, field: &str) -> Vec<Value> {
        let mut seen = Vec::new();
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(10))
                .unwrap_or_else(|_| panic!("no {field} within 10 s; saw {seen:?}"));
            let done = line.get(field).is_some();
            seen.push(line);
            if done {
                return seen;
            }
        }
    }

    /// Everything the tab printed during the next `duration`.
    pub fn during(&self, duration: Duration) -> Vec<Value> {
        let deadline = Instant::now() + duration;
        let mut seen = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => seen.push(line),
                Err(_) => break,
            }
        }
        seen
    }

    /// Subscribes, stays idle for `idle`, and returns the socket id it was
    /// connected with; panics, naming what the tab saw, if it lost the
    /// connection or reconnected meanwhile.
    pub fn stays_connected(&self, idle: Duration) -> String {
        let opened = self.until("subscribed");
        let socket_id = opened
            .iter()
            .rev()
            .find(|line| line["state"] == "connected")
            .and_then(|line| line["socket_id"].as_str())
            .unwrap_or_else(|| panic!("never connected: {opened:?}"))
            .to_owned();
        let idle_lines = self.during(idle);
        assert!(
            idle_lines.is_empty(),
            "an idle tab must notice nothing for {idle:?}, but saw {idle_lines:?}"
        );
        socket_id
    }
}

impl Drop for IdleTab {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
