"""The benchmark harness runs end to end and prints what it promises (never a timing)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
REQUIRED = {
    "workload",
    "backend",
    "unit",
    "eventcore",
    "eventsourcing",
    "raw",
    "ratio_vs_eventsourcing",
}


def test_bench_prints_one_json_line_per_workload() -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "run.py"),
            "--backend=memory",
            "--quick",
            "--json",
            "--repeat=1",
            "--only=a,e",
            "--scale=0.01",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    rows = [json.loads(line) for line in lines]
    assert [row["workload"] for row in rows] == ["a_new_streams_sequential", "e_read_fold_stream"]
    for row in rows:
        assert row.keys() >= REQUIRED
        assert row["backend"] == "memory"
        assert isinstance(row["eventcore"], float)
        assert isinstance(row["eventsourcing"], float)
        assert row["raw"] is None
        assert isinstance(row["ratio_vs_eventsourcing"], float)
