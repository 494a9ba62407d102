//! A small run of the load generator (src/loadgen.rs) against the real
//! server: a check that it counts correctly and nothing is lost, not a
//! timing assertion (timings are measured by bench/compare.sh).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use serde_json::Value;

const APP_ID: &str = "42";
const KEY: &str = "test-key";
const SECRET: &str = "test-secret";

/// The server binary of this workspace, built by `cargo test --workspace`
/// (target/<profile>/flarum-ws, next to this test's deps folder).
fn server_binary() -> PathBuf {
    let binary = std::env::current_exe()
        .unwrap()
        .parent()
        .and_then(|deps| deps.parent())
        .unwrap()
        .join("flarum-ws");
    assert!(
        binary.exists(),
        "build the server first: `cargo build --workspace` (`cargo test --workspace` does too)"
    );
    binary
}

/// The server on a free loopback port, and that port.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start(dir: &std::path::Path) -> Self {
        let mut child = Command::new(server_binary())
            .current_dir(dir)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap())
            .envs([
                ("FLARUM_WS_APP_ID", APP_ID),
                ("FLARUM_WS_APP_KEY", KEY),
                ("FLARUM_WS_APP_SECRET", SECRET),
            ])
            .args(["serve", "--host", "127.0.0.1", "--port", "0"])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let mut lines = stderr.lines();
        let port = loop {
            let line = lines
                .next()
                .expect("the server said where it listens")
                .unwrap();
            if let Some(rest) = line.split("Listening on ").nth(1) {
                let address = rest.split_whitespace().next().unwrap();
                break address.rsplit(':').next().unwrap().parse().unwrap();
            }
        };
        // Keep reading so the server never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Self { child, port }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn loadgen_counts_every_delivery_and_nothing_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let loadgen = env!("CARGO_BIN_EXE_loadgen");
    for private in [false, true] {
        let mut command = Command::new(loadgen);
        command.args([
            "--port",
            &server.port.to_string(),
            "--app-id",
            APP_ID,
            "--key",
            KEY,
            "--secret",
            SECRET,
        ]);
        command.args(["--pid", &server.child.id().to_string()]);
        command.args([
            "--connections",
            "200",
            "--channels",
            "4",
            "--events",
            "40",
            "--settle",
            "0",
            "--after-disconnect",
            "0",
        ]);
        if private {
            command.arg("--private");
        }
        let output = command.output().unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let report: Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(report["subscribed"], 200, "{report}");
        assert_eq!(report["expected_deliveries"], 40 * 50, "{report}");
        assert_eq!(report["delivered"], 40 * 50, "{report}");
        assert_eq!(report["lost"], 0, "{report}");
        assert_eq!(report["trigger_errors"], 0, "{report}");
        assert!(
            report["kib_per_connection"].is_number()
                && report["server_cpu_us_per_delivery"].is_number(),
            "{report}"
        );
    }
}
