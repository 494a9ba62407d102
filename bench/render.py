"""Renders one compare.sh run (JSON lines) as bench/RESULTS.md, or another
script's run of the same load generator when that script's command is given
as the second argument (bench/ab.sh)."""

import os
import platform
import sys

from report import by_label, median, runs as read_runs

rows = read_runs(sys.argv[1])
runs = by_label(rows)
rounds = max(len(group) for group in runs.values())


def summarise(group):
    """One row per server and scenario: the median of each measurement over
    the rounds; lost messages are added up, never averaged away."""
    pick = lambda key: median([r[key] for r in group])
    return {
        "label": group[0]["label"],
        "subscribed": pick("subscribed"),
        "connect_subscribe_per_sec": pick("connect_subscribe_per_sec"),
        "kib_per_connection": pick("kib_per_connection"),
        "delivered": sum(r["delivered"] for r in group),
        "expected_deliveries": sum(r["expected_deliveries"] for r in group),
        "lost": sum(r["lost"] for r in group),
        "deliveries_per_sec": pick("deliveries_per_sec"),
        "latency_us": {k: median([r["latency_us"][k] for r in group]) for k in ("p50", "p99", "max")},
        "server_cpu_us_per_delivery": pick("server_cpu_us_per_delivery"),
        "rss_after_disconnect_kib": pick("rss_after_disconnect_kib"),
    }


by = {label: summarise(group) for label, group in runs.items()}
servers = sorted({label.split(" ", 1)[0] for label in runs})
scenarios = []
for r in rows:
    name = r["label"].split(" ", 1)[1]
    if name not in scenarios:
        scenarios.append(name)

mem_total = next(l.split()[1] for l in open("/proc/meminfo") if l.startswith("MemTotal"))
out = [
    "# Benchmark results",
    "",
    f"Machine: {os.cpu_count()} cores, {int(mem_total) // 1024} MiB memory, {platform.platform()}.",
    f"Command: `{sys.argv[2] if len(sys.argv) > 2 else 'bash bench/compare.sh'}` (the servers run one after the other on loopback; the load",
    "generator `bench/tools/src/loadgen.rs` runs on the same machine, so both compete for the same cores).",
    f"Each value is the median of {rounds} round(s); in each round every scenario runs on each server in",
    "turn. *delivered* and *lost* are totals over the rounds.",
    "",
    "| scenario | server | subscribed | conn+sub/s | KiB/conn | delivered | lost | deliveries/s | p50 µs | p99 µs | max µs | server CPU µs/delivery | RSS after disconnect KiB |",
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
]
for name in scenarios:
    for server in servers:
        r = by.get(f"{server} {name}")
        if not r:
            continue
        lat = r["latency_us"]
        out.append(
            f"| {name} | {server} | {r['subscribed']} | {r['connect_subscribe_per_sec']:.0f} | {r['kib_per_connection']} | "
            f"{r['delivered']}/{r['expected_deliveries']} | {r['lost']} | {r['deliveries_per_sec']:.0f} | {lat['p50']} | {lat['p99']} | "
            f"{lat['max']} | {r['server_cpu_us_per_delivery']} | {r['rss_after_disconnect_kib']} |"
        )

if "sockudo" in servers and "flarum-ws" in servers:
    out += ["", "## Ratios (flarum-ws / sockudo)", "", "| scenario | KiB/conn | deliveries/s | p99 latency | CPU µs/delivery |", "|---|---|---|---|---|"]
    for name in scenarios:
        a, b = by.get(f"flarum-ws {name}"), by.get(f"sockudo {name}")
        if not a or not b:
            continue

        def ratio(x, y):
            return f"{x / y:.2f}×" if x and y else "-"

        out.append(
            f"| {name} | {ratio(a['kib_per_connection'], b['kib_per_connection'])} | "
            f"{ratio(a['deliveries_per_sec'], b['deliveries_per_sec'])} | {ratio(a['latency_us']['p99'], b['latency_us']['p99'])} | "
            f"{ratio(a['server_cpu_us_per_delivery'], b['server_cpu_us_per_delivery'])} |"
        )
out += [
    "",
    "## Reading the table",
    "",
    "- *Full speed* keeps `--publishers` (8) trigger requests in flight. The load generator sends",
    "  them from a runtime on a thread of its own, so the rate is what the server accepts, not how",
    "  soon the generator's own 10 000 client tasks let a publisher run.",
    "- At full speed the latency is time spent queued: a server that accepts events faster than",
    "  the clients read them holds more of them in its per-socket queues, so its p50/p99 grow with",
    "  its acceptance rate. The fixed-rate scenario is the latency comparison.",
    "- Server CPU per delivery is the server's user+system time from `/proc/PID/stat` during the",
    "  trigger phase divided by the deliveries counted by the clients.",
]
out += ["", "Raw JSON lines of this run: `" + sys.argv[1] + "`; all runs: `target/bench/results.jsonl` (neither is kept in git)."]
print("\n".join(out))
