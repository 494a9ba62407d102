"""What every bench report shares: reading a run's raw JSON lines, grouping
them by label, medians over the rounds and the machine line. Each script
renders its own tables with these (bench/common.sh puts bench/ on
PYTHONPATH for the scripts' `python3 - <<'PY'` reports)."""

import json
import os
import statistics


def runs(path):
    """The JSON lines of one run's raw file."""
    return [json.loads(line) for line in open(path) if line.strip()]


def by_label(rows, label=lambda row: row["label"]):
    """The rows grouped by `label(row)`, groups in the order first seen."""
    groups = {}
    for row in rows:
        groups.setdefault(label(row), []).append(row)
    return groups


def median(values):
    """The median of the values that were measured (None is skipped), or
    None when none was."""
    measured = [value for value in values if value is not None]
    return statistics.median(measured) if measured else None


def cpu_model():
    return next(
        (line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
        "?",
    )


def cores():
    """The cores this process may run on (what `nproc` says)."""
    return len(os.sched_getaffinity(0))


def machine():
    """`Machine: MODEL, N cores` for the end of a report."""
    return f"Machine: {cpu_model()}, {cores()} cores"
