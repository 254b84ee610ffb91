"""The benchmark harness runs end to end and prints what it promises (never a timing)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.backends import POSTGRES_URL, skip_or_fail

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


def run_bench(*options: str) -> list[dict[str, Any]]:
    """Run ``bench/run.py --json --repeat=1 --scale=0.01 *options``; its JSON lines."""
    command = [sys.executable, str(REPO / "bench" / "run.py"), "--json", "--repeat=1"]
    done = subprocess.run(
        [*command, "--scale=0.01", *options],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


def test_bench_prints_one_json_line_per_workload() -> None:
    rows = run_bench("--backend=memory", "--quick", "--only=a,e")
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
        skip_or_fail(reason, "the postgres benchmark must run")
    rows = run_bench("--backend=postgres", "--only=a,f")
    assert [row["workload"] for row in rows] == ["a_new_streams_sequential", "f_read_global_log"]
    for row in rows:
        assert row.keys() >= REQUIRED
        assert row["backend"] == "postgres"
        for side in ("eventcore", "eventsourcing", "raw"):
            assert isinstance(row[side], float), side
        assert isinstance(row["ratio_vs_eventsourcing"], float)
        assert isinstance(row["target"], str)  # issue 3's targets are printed for postgres
        assert isinstance(row["target_met"], bool)


MESSAGING = ["j_relay_throughput", "k_end_to_end_latency_p99", "l_bus_throughput"]
CROSS_PROCESS = "k_cross_process_hop_p99"


def _run_messaging(backend: str, with_targets: set[str]) -> None:
    """Run j, k and l tiny on ``backend``; ``with_targets``: the workloads that have one there."""
    rows = run_bench(f"--backend={backend}", "--only=j,k,l")
    # k across processes shares two SQLite files, so it runs on the SQLite bus only.
    expected = MESSAGING if backend != "sqlite" else sorted([*MESSAGING, CROSS_PROCESS])
    assert [row["workload"] for row in rows] == expected
    for row in rows:
        assert row.keys() >= REQUIRED
        assert row["backend"] == backend
        assert isinstance(row["eventcore"], float)
        assert row["eventsourcing"] is None  # the eventsourcing library has no relay or bus
        assert "eventsourcing has no" in row["notes"]
        if row["workload"] in with_targets:
            assert isinstance(row["target"], str)
            assert isinstance(row["target_met"], bool)
        else:
            assert row["target"] is None
    by_name = {row["workload"]: row for row in rows}
    for throughput in ("j_relay_throughput", "l_bus_throughput"):
        assert isinstance(by_name[throughput]["raw"], float), throughput
        assert isinstance(by_name[throughput]["ratio_vs_raw"], float), throughput
    latency = by_name["k_end_to_end_latency_p99"]
    assert latency["raw"] is None
    assert float(latency["facts"]["eventcore.p50_ms"][0]) <= latency["eventcore"]


def test_bench_messaging_workloads_run_on_the_sqlite_bus() -> None:
    _run_messaging("sqlite", {"k_end_to_end_latency_p99", CROSS_PROCESS, "l_bus_throughput"})


def test_bench_messaging_workloads_run_on_nats() -> None:
    from bench.common import NatsBackend

    reason = NatsBackend().unavailable()
    if reason is not None:
        skip_or_fail(reason, "the NATS benchmark must run")
    _run_messaging("nats", {"j_relay_throughput", "k_end_to_end_latency_p99"})


def test_bench_overhead_prints_a_line_per_setup_beside_the_plain_run() -> None:
    rows = run_bench("--backend=memory", "--only=b,j", "--overhead")
    plain = [row["workload"] for row in rows if "kind" not in row]
    assert plain == ["b_new_streams_concurrent", "j_relay_throughput"]
    extra = [row for row in rows if row.get("kind") == "overhead"]
    setups = [
        "plain",
        "empty-hook",
        "every-method-hook",
        "metrics",
        "otel-api",
        "otel-api-hooks",
        "otel-sdk+metrics",
        "otel-sdk-10pct",
        "sdk-bare-spans",
    ]
    for workload in ("b_new_streams_concurrent", "j_relay_throughput_traced"):
        mine = [row for row in extra if row["workload"] == workload]
        assert [row["setup"] for row in mine] == setups
        for row in mine:
            assert row["repeat"] >= 3  # medians of at least three runs
            assert len(row["samples"]) == row["repeat"]
            assert isinstance(row["median"], float)
            assert isinstance(row["cpu_us_per_op"], float)
        targets = {row["setup"]: row["target"] for row in mine if row["target"] is not None}
        assert targets == {
            "otel-api": "≤ 2% slower than plain",
            "otel-sdk+metrics": "≤ 15% slower than plain",
        }


def test_bench_hub_workload_compares_with_the_relay_on_nats() -> None:
    from bench.common import NatsBackend

    reason = NatsBackend().unavailable()
    if reason is not None:
        skip_or_fail(reason, "the NATS benchmark must run")
    (row,) = run_bench("--backend=nats", "--only=o")
    assert row["workload"] == "o_hub_throughput"
    assert isinstance(row["eventcore"], float)
    assert isinstance(row["raw"], float)  # the relay (j), same run
    assert isinstance(row["ratio_vs_raw"], float)
    assert isinstance(row["target_met"], bool)
    assert "eventsourcing has no hub" in row["notes"]


def test_bench_serves_commands_over_http_on_both_sides() -> None:
    (row,) = run_bench("--backend=sqlite", "--only=n")
    assert row["workload"] == "n_http_commands"
    assert isinstance(row["eventcore"], float)
    assert isinstance(row["eventsourcing"], float)
    assert "server CPU" in row["notes"]
