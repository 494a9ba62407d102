//! A small run of the load generator (examples/loadgen.rs) against the real
//! binary: a check that it counts correctly and nothing is lost, not a
//! timing assertion (timings are measured by bench/compare.sh).

mod common;

use std::process::Command;

use common::process::{flarum_ws, start};
use common::*;
use serde_json::Value;

#[test]
fn loadgen_counts_every_delivery_and_nothing_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(
        flarum_ws(dir.path())
            .envs([
                ("FLARUM_WS_APP_ID", APP_ID),
                ("FLARUM_WS_APP_KEY", KEY),
                ("FLARUM_WS_APP_SECRET", SECRET),
            ])
            .args(["serve", "--host", "127.0.0.1", "--port", "0"]),
    );
    // Examples are built next to the test binaries: target/<profile>/examples.
    let loadgen = std::env::current_exe()
        .unwrap()
        .parent()
        .and_then(|deps| deps.parent())
        .unwrap()
        .join("examples/loadgen");
    assert!(
        loadgen.exists(),
        "build it first: `cargo build --examples` (plain `cargo test` does too)"
    );
    for private in [false, true] {
        let mut command = Command::new(&loadgen);
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
