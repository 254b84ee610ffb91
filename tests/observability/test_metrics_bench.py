"""``bench/metrics_overhead.py`` runs end to end and prints one JSON line per setup (its
figures are the bench's business, never a test's)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_the_metrics_overhead_bench_prints_plain_and_metrics_for_each_workload() -> None:
    done = subprocess.run(
        [sys.executable, "bench/metrics_overhead.py", "--json", "--scale=0.01", "--repeat=3"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    assert [(row["workload"], row["setup"]) for row in rows] == [
        ("b_new_streams_concurrent", "plain"),
        ("b_new_streams_concurrent", "no-op"),
        ("b_new_streams_concurrent", "metrics"),
        ("j_relay_throughput", "plain"),
        ("j_relay_throughput", "no-op"),
        ("j_relay_throughput", "metrics"),
    ]
    assert all(row["kind"] == "overhead" and len(row["samples"]) == 3 for row in rows)
    assert all(row["target"] is None for row in rows if row["setup"] == "plain")
