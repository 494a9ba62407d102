//! The Grafana board shipped in the package (contrib/grafana/flarum-ws.json,
//! installed under /usr/share/doc/flarum-ws/examples/ and in the tarball):
//! built here from the same metric rows as `/metrics` (run
//! `UPDATE_DOCS=1 cargo test --test suite grafana::` after changing a
//! panel or a row), and every query of the file as committed is checked
//! against the names the server exports, so a renamed metric cannot leave
//! a panel silently empty.

use std::collections::BTreeSet;

use flarum_ws::telemetry::metrics::{self, Kind, MetricRow};
use serde_json::{Value, json};

const BOARD: &str = "contrib/grafana/flarum-ws.json";

fn repo_file(path: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// The row named `name`; a panel naming no metric is a build error here.
fn row(name: &str) -> &'static MetricRow {
    metrics::ROWS
        .iter()
        .find(|row| row.name == name)
        .unwrap_or_else(|| panic!("the board names {name}, which no metric row defines"))
}

/// A query: `{m}` stands for the sample name of `metric`'s row (a
/// histogram's buckets for a histogram).
fn query(metric: &str, template: &str, legend: &str) -> (String, String) {
    let row = row(metric);
    let samples = match row.kind {
        Kind::Histogram => format!("{}_bucket", row.name),
        _ => row.sample_name(),
    };
    (
        template.replace("{m}", &format!("{samples}{{instance=~\"$instance\"}}")),
        legend.to_owned(),
    )
}

/// A panel: its title, the unit of its values, and its (query, legend)s.
type Panel = (&'static str, &'static str, Vec<(String, String)>);

/// The panels, two to a row.
fn panels() -> Vec<Panel> {
    vec![
        (
            "Open connections",
            "short",
            vec![query(
                "flarum_ws_connections",
                "sum by (instance) ({m})",
                "{{instance}}",
            )],
        ),
        (
            "Subscriptions, channels and presence members",
            "short",
            vec![
                query("flarum_ws_subscriptions", "sum({m})", "subscriptions"),
                query("flarum_ws_channels", "sum({m})", "channels"),
                query("flarum_ws_presence_members", "sum({m})", "presence members"),
            ],
        ),
        (
            "Messages per second",
            "ops",
            vec![
                query(
                    "flarum_ws_messages_received",
                    "sum(rate({m}[$__rate_interval]))",
                    "in",
                ),
                query(
                    "flarum_ws_messages_sent",
                    "sum(rate({m}[$__rate_interval]))",
                    "out",
                ),
            ],
        ),
        (
            "API events and requests per second",
            "ops",
            vec![
                query(
                    "flarum_ws_http_api_events",
                    "sum(rate({m}[$__rate_interval]))",
                    "events",
                ),
                query(
                    "flarum_ws_http_api_requests",
                    "sum by (status) (rate({m}[$__rate_interval]))",
                    "requests {{status}}",
                ),
            ],
        ),
        (
            "Refusals per second, by reason",
            "ops",
            vec![
                query(
                    "flarum_ws_refusals",
                    "sum by (reason) (rate({m}[$__rate_interval]))",
                    "{{reason}}",
                ),
                query(
                    "flarum_ws_connections_refused",
                    "sum by (code) (rate({m}[$__rate_interval]))",
                    "websocket refused {{code}}",
                ),
            ],
        ),
        (
            "Closes per second, by code",
            "ops",
            vec![query(
                "flarum_ws_connections_closed",
                "sum by (code) (rate({m}[$__rate_interval]))",
                "{{code}}",
            )],
        ),
        (
            "Fan-out time, 99th percentile",
            "s",
            vec![query(
                "flarum_ws_fanout_duration_seconds",
                "histogram_quantile(0.99, sum by (le) (rate({m}[$__rate_interval])))",
                "p99",
            )],
        ),
        (
            "Webhooks per second",
            "ops",
            vec![
                query(
                    "flarum_ws_webhooks_sent",
                    "sum(rate({m}[$__rate_interval]))",
                    "sent",
                ),
                query(
                    "flarum_ws_webhooks_failed",
                    "sum(rate({m}[$__rate_interval]))",
                    "failed",
                ),
                query(
                    "flarum_ws_webhooks_dropped",
                    "sum(rate({m}[$__rate_interval]))",
                    "dropped",
                ),
            ],
        ),
        (
            "Cluster: Redis link (1 up) and nodes",
            "short",
            vec![
                query(
                    "flarum_ws_redis_up",
                    "min by (instance) ({m})",
                    "Redis up {{instance}}",
                ),
                query("flarum_ws_cluster_nodes", "max({m})", "nodes"),
            ],
        ),
        (
            "Cluster: events lost, dropped and replayed per second",
            "ops",
            vec![
                query(
                    "flarum_ws_redis_events_lost",
                    "sum(rate({m}[$__rate_interval]))",
                    "lost",
                ),
                query(
                    "flarum_ws_redis_messages_dropped",
                    "sum(rate({m}[$__rate_interval]))",
                    "dropped",
                ),
                query(
                    "flarum_ws_redis_events_replayed",
                    "sum(rate({m}[$__rate_interval]))",
                    "replayed",
                ),
            ],
        ),
        (
            "Memory",
            "bytes",
            vec![
                query(
                    "process_resident_memory_bytes",
                    "{m}",
                    "resident {{instance}}",
                ),
                query(
                    "flarum_ws_redis_event_log_bytes",
                    "{m}",
                    "Redis event log {{instance}}",
                ),
            ],
        ),
        (
            "Open file descriptors",
            "short",
            vec![query("process_open_fds", "{m}", "{{instance}}")],
        ),
    ]
}

fn board() -> Value {
    let datasource = json!({"type": "prometheus", "uid": "${datasource}"});
    let panels: Vec<Value> = panels()
        .into_iter()
        .enumerate()
        .map(|(n, (title, unit, queries))| {
            let targets: Vec<Value> = queries
                .into_iter()
                .zip('A'..)
                .map(|((expr, legend), ref_id)| {
                    json!({
                        "datasource": datasource,
                        "expr": expr,
                        "legendFormat": legend,
                        "refId": ref_id.to_string(),
                    })
                })
                .collect();
            json!({
                "id": n + 1,
                "type": "timeseries",
                "title": title,
                "datasource": datasource,
                "gridPos": {"h": 8, "w": 12, "x": (n % 2) * 12, "y": (n / 2) * 8},
                "fieldConfig": {"defaults": {"unit": unit, "min": 0}, "overrides": []},
                "options": {"legend": {"displayMode": "list", "placement": "bottom"}, "tooltip": {"mode": "multi"}},
                "targets": targets,
            })
        })
        .collect();
    json!({
        "__inputs": [{
            "name": "DS_PROMETHEUS",
            "label": "Prometheus",
            "description": "The Prometheus that scrapes flarum-ws",
            "type": "datasource",
            "pluginId": "prometheus",
            "pluginName": "Prometheus",
        }],
        "title": "flarum-ws",
        "uid": "flarum-ws",
        "description": "The realtime server of a Flarum forum: connections, traffic, refusals, webhooks and the Redis cluster. Built from the metric rows of flarum-ws (tests/suite/grafana.rs).",
        "tags": ["flarum-ws", "pusher", "websocket"],
        "editable": true,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "timezone": "browser",
        "templating": {"list": [
            {
                "name": "datasource",
                "label": "Prometheus",
                "type": "datasource",
                "query": "prometheus",
                "current": {},
            },
            {
                "name": "instance",
                "label": "Instance",
                "type": "query",
                "datasource": datasource,
                "query": format!("label_values({}, instance)", row("flarum_ws_connections").sample_name()),
                "refresh": 2,
                "includeAll": true,
                "multi": true,
                "allValue": ".*",
                "current": {"text": "All", "value": "$__all"},
            },
        ]},
        "annotations": {"list": []},
        "panels": panels,
    })
}

#[test]
fn the_grafana_board_is_built_from_the_metric_rows() {
    let path = repo_file(BOARD);
    let generated = serde_json::to_string_pretty(&board()).unwrap() + "\n";
    if std::env::var_os("UPDATE_DOCS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{BOARD} is out of date: run UPDATE_DOCS=1 cargo test --test suite grafana::"
    );
}

/// Read from the file as shipped: every metric a query names is one the
/// server exports (histograms by their buckets, sums and counts).
#[test]
fn every_query_of_the_grafana_board_names_an_exported_metric() {
    let board: Value =
        serde_json::from_str(&std::fs::read_to_string(repo_file(BOARD)).unwrap()).unwrap();
    let mut exported = BTreeSet::new();
    for row in metrics::ROWS {
        exported.insert(row.sample_name());
        if row.kind == Kind::Histogram {
            for suffix in ["_bucket", "_sum", "_count"] {
                exported.insert(format!("{}{suffix}", row.name));
            }
        }
    }
    let mut queries = 0;
    for panel in board["panels"].as_array().unwrap() {
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{} has no query", panel["title"]);
        for target in targets {
            let expr = target["expr"].as_str().unwrap();
            let named: Vec<&str> = expr
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|word| word.starts_with("flarum_ws_") || word.starts_with("process_"))
                .collect();
            assert!(!named.is_empty(), "{expr} names no metric");
            for name in named {
                assert!(
                    exported.contains(name),
                    "panel {}: {name} is not exported (exported: {exported:?})",
                    panel["title"]
                );
                queries += 1;
            }
        }
    }
    assert!(queries >= 20, "{queries} metric names in the board");
}
