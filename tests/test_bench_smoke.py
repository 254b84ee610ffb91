"""The benchmark harness runs end to end and prints what it promises (never a timing)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.backends import POSTGRES_URL, running_in_ci

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


def _postgres_unreachable() -> str | None:
    try:
        import psycopg
    except ImportError as error:
        return f"psycopg not installed: {error}"
    try:
        with psycopg.connect(POSTGRES_URL, connect_timeout=5):
            return None
    except psycopg.Error as error:
        return f"PostgreSQL unreachable at {POSTGRES_URL}: {error}"


def test_bench_runs_on_postgres_with_every_side() -> None:
    reason = _postgres_unreachable()
    if reason is not None:
        if running_in_ci():
            pytest.fail(f"{reason} (CI=true: the postgres benchmark must run)", pytrace=False)
        pytest.skip(reason)
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "run.py"),
            "--backend=postgres",
            "--json",
            "--repeat=1",
            "--only=a,f",
            "--scale=0.01",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    assert [row["workload"] for row in rows] == ["a_new_streams_sequential", "f_read_global_log"]
    for row in rows:
        assert row.keys() >= REQUIRED
        assert row["backend"] == "postgres"
        for side in ("eventcore", "eventsourcing", "raw"):
            assert isinstance(row[side], float), side
        assert isinstance(row["ratio_vs_eventsourcing"], float)
        assert isinstance(row["target"], str)  # issue 3's targets are printed for postgres
        assert isinstance(row["target_met"], bool)
