"""Tracing across real processes: ``shop``, ``stock`` and ``shipping`` each run in a
process of their own (``service_process.py``) on a shared bus — the SQLite bus, and
once NATS JetStream — and export their spans over OTLP/HTTP to a receiver this test runs
on 127.0.0.1. One order placed in ``shop`` must arrive as one trace whose parent chain
runs through all three services."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.messaging.buses import NATS_URL, drop_nats_namespace, require_nats
from tests.observability.chain import SERVICES
from tests.observability.otlp_receiver import Received, Receiver, receiving

ROOT = Path(__file__).resolve().parents[2]
#: Bounds each wait; only a hang reaches it (three interpreters start in a few seconds).
PATIENCE = 30.0


def start(name: str, store_url: str, bus_url: str, endpoint: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    # Whatever OTEL_* the environment has must not redirect or silence the export.
    env = {key: value for key, value in env.items() if not key.startswith("OTEL_")}
    command = [sys.executable, "-m", "tests.observability.service_process"]
    return subprocess.Popen(
        [*command, name, store_url, bus_url, endpoint],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def stop(processes: list[subprocess.Popen[str]]) -> list[str]:
    """SIGTERM each (each flushes its spans as it exits); what each that failed said."""
    for process in processes:
        if process.poll() is None:
            process.terminate()
    failures = []
    for process in processes:
        try:
            _, errors = process.communicate(timeout=PATIENCE)
        except subprocess.TimeoutExpired:
            process.kill()
            _, errors = process.communicate()
        if process.returncode != 0:
            failures.append(f"{process.args!r} exited {process.returncode}:\n{errors}")
    return failures


def run_chain(receiver: Receiver, store_url: str, bus_url: str) -> list[Received]:
    """Run the three services until ``shipping``'s command has been exported, stop them
    and return every span received."""
    processes = [
        start(name, store_url.format(name=name), bus_url, receiver.endpoint) for name in SERVICES
    ]
    done = False
    try:
        done = receiver.wait_for(
            lambda spans: any(span.name == "ScheduleShipment" for span in spans), PATIENCE
        )
    finally:
        failures = stop(processes)
    assert done, (sorted((span.service, span.name) for span in receiver.spans), failures)
    assert not failures, failures
    return receiver.spans


def assert_one_trace_through_three_services(spans: list[Received], bus: str) -> None:
    assert len({span.trace_id for span in spans}) == 1, sorted(
        (span.service, span.name, span.trace_id) for span in spans
    )
    by_name = {(span.service, span.name): span for span in spans}
    counts = Counter((span.service, span.name) for span in spans)
    assert {key: n for key, n in counts.items() if key[1] not in ("read_stream", "append")} == {
        ("shop", "PlaceOrder"): 1,
        ("shop", "publish orders"): 1,
        ("stock", "process orders"): 1,
        ("stock", "ReserveStock"): 1,
        ("stock", "publish reservations"): 1,
        ("shipping", "process reservations"): 1,
        ("shipping", "ScheduleShipment"): 1,
    }
    place = by_name["shop", "PlaceOrder"]
    publish_orders = by_name["shop", "publish orders"]
    process_orders = by_name["stock", "process orders"]
    reserve = by_name["stock", "ReserveStock"]
    publish_reservations = by_name["stock", "publish reservations"]
    process_reservations = by_name["shipping", "process reservations"]
    schedule = by_name["shipping", "ScheduleShipment"]

    assert place.parent_id is None
    assert publish_orders.parent_id == place.span_id
    assert publish_orders.links == ((place.trace_id, place.span_id),)
    assert process_orders.parent_id == place.span_id
    assert reserve.parent_id == process_orders.span_id
    assert publish_reservations.parent_id == reserve.span_id
    assert process_reservations.parent_id == reserve.span_id
    assert schedule.parent_id == process_reservations.span_id
    assert (publish_orders.kind, process_orders.kind) == (
        "SPAN_KIND_PRODUCER",
        "SPAN_KIND_CONSUMER",
    )
    for span in (publish_orders, process_orders, publish_reservations, process_reservations):
        assert span.attributes["messaging.system"] == bus
    # Each command's read and append, in its own service, under it.
    for command in (place, reserve, schedule):
        children = [
            span
            for span in spans
            if span.parent_id == command.span_id and span.kind == "SPAN_KIND_CLIENT"
        ]
        assert sorted(span.name for span in children) == ["append", "read_stream"], command.name
        assert {span.service for span in children} == {command.service}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with receiving() as receiver:
        yield receiver


# Three interpreters start (OpenTelemetry's SDK and exporter imported in each) and pass
# one order along with the SQLite bus's polling; about 5 s alone, up to ~30 s measured
# beside other test runs on a loaded 2-CPU machine.
@pytest.mark.timeout(120)
def test_a_request_is_one_trace_across_three_processes_on_the_sqlite_bus(
    receiver: Receiver, tmp_path: Path
) -> None:
    spans = run_chain(receiver, f"sqlite:///{tmp_path}/{{name}}.db", f"sqlite:///{tmp_path}/bus.db")
    assert_one_trace_through_three_services(spans, "sqlite")


@pytest.mark.timeout(120)  # as the SQLite one
def test_a_request_is_one_trace_across_three_processes_on_nats(
    receiver: Receiver, tmp_path: Path
) -> None:
    asyncio.run(require_nats())
    namespace = f"trace{uuid.uuid4().hex[:12]}"
    try:
        spans = run_chain(
            receiver,
            f"sqlite:///{tmp_path}/{{name}}.db",
            f"{NATS_URL}?namespace={namespace}&partitions=2",
        )
    finally:
        asyncio.run(drop_nats_namespace(namespace))
    assert_one_trace_through_three_services(spans, "nats")
