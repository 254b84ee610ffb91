"""``eventcore sagas list|show|retry|abort``: against a SQLite store of sagas in known
states, and — the operator's whole story — a stuck saga of running services listed,
then retried from another process once its participant is fixed, and compensated."""

from __future__ import annotations

import asyncio
import json
import sys
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
from typer.testing import CliRunner

from eventcore import EventRegistry
from eventcore.lifecycle import running
from eventcore.saga import SAGA_EVENTS, replay
from eventcore.saga.streams import SAGA_EVENT_TYPES, saga_stream
from eventcore.store import open_store
from tests.cli.conftest import invoke, one_line_error, process_environment, sqlite_url
from tests.cli.saga_samples import ORDER_SAGA, WRITTEN, write_sagas
from tests.saga.conftest import open_site
from tests.saga.world import RULES, Order, world

SAGAS_REF = "tests.cli.saga_samples:SAGAS"


@pytest.fixture
def sagas_url(tmp_path: Path) -> str:
    """A SQLite store holding ``WRITTEN``: order-1 completed, order-2 compensated,
    order-3 stuck undoing its charge."""
    url = sqlite_url(tmp_path / "orders.db")
    asyncio.run(write_sagas(url))
    return url


async def _stream_types(url: str, saga_id: str) -> list[str]:
    store = await open_store(url, create=False)
    try:
        stored = await store.read_stream(saga_stream(ORDER_SAGA.name, saga_id))
        return [event.type for event in stored]
    finally:
        await store.aclose()


def _status(url: str, saga_id: str) -> str:
    async def read() -> str:
        store = await open_store(url, create=False)
        try:
            registry = EventRegistry(SAGA_EVENTS)
            stored = await store.read_stream(saga_stream(ORDER_SAGA.name, saga_id))
            state = replay(registry.decode(e) for e in stored if e.type in SAGA_EVENT_TYPES)  # type: ignore[misc]
            assert state is not None
            return state.status
        finally:
            await store.aclose()

    return asyncio.run(read())


# --- list and show ----------------------------------------------------------------------


def test_list_shows_every_saga_oldest_first(runner: CliRunner, sagas_url: str) -> None:
    result = invoke(runner, "sagas", "list", "--store", sagas_url)
    assert result.exit_code == 0, result.output
    heads = [line.split("  ")[:3] for line in result.stdout.splitlines() if line[:1] != " "]
    assert heads == [[saga_id, "place-order", status] for saga_id, status in WRITTEN.items()]
    # The stuck one says where it is and why, on a line of its own.
    assert "order-3  place-order  stuck  on charge (undo)" in result.stdout
    assert "  compensating 'charge' failed 3 times; last: charge refused by the test\n" in (
        result.stdout
    )


def test_list_filters_by_status_and_type(runner: CliRunner, sagas_url: str) -> None:
    result = invoke(runner, "sagas", "list", "--store", sagas_url, "--status", "stuck", "--json")
    assert result.exit_code == 0, result.output
    [record] = [json.loads(line) for line in result.stdout.splitlines()]
    assert record["saga_id"] == "order-3"
    assert record["status"] == "stuck"
    assert (record["step"], record["phase"]) == ("charge", "compensation")
    assert record["stream"] == "saga:place-order:order-3"
    assert record["started_at"].endswith("Z")
    assert record["ended_at"] is None
    assert record["stuck_reason"].startswith("compensating 'charge' failed 3 times")

    both = invoke(
        runner, "sagas", "list", "--store", sagas_url, "--json",
        "--status", "completed", "--status", "compensated",
    )  # fmt: skip
    assert [json.loads(line)["saga_id"] for line in both.stdout.splitlines()] == [
        "order-1",
        "order-2",
    ]
    other = invoke(runner, "sagas", "list", "--store", sagas_url, "--type", "ship-parcel")
    assert other.exit_code == 0
    assert other.stdout == ""
    assert "no sagas" in other.stderr


def test_show_gives_the_timeline_of_steps_attempts_and_replies(
    runner: CliRunner, sagas_url: str
) -> None:
    result = invoke(runner, "sagas", "show", "order-3", "--store", sagas_url)
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert "place-order order-3" in text
    assert "charge refused by the test" in text
    assert "undo #3" in text
    for event in ("SagaStarted", "SagaStepFailed", "SagaCompensationFailed", "SagaStuck"):
        assert event in text

    record = json.loads(invoke(runner, "sagas", "show", "order-3", "--store", sagas_url,
                               "--json").stdout)  # fmt: skip
    assert record["status"] == "stuck"
    assert record["data"] == {"order_id": "order-3", "amount": 10}
    steps = {step["name"]: step for step in record["steps"]}
    assert [step["name"] for step in record["steps"]] == ["reserve", "charge", "ship"]
    assert steps["ship"]["status"] == "failed"
    assert steps["reserve"]["result"] == {"ref": "reserve-order-3"}
    outcomes = [(a["phase"], a["attempt"], a["outcome"]) for a in steps["charge"]["attempts"]]
    assert outcomes == [
        ("action", 1, "succeeded"),
        ("compensation", 1, "failed"),
        ("compensation", 2, "failed"),
        ("compensation", 3, "failed"),
    ]
    first = steps["charge"]["attempts"][0]
    assert first["requested_at"].endswith("Z")
    assert first["duration"] >= 0
    assert [entry["event"] for entry in record["timeline"]][-1] == "SagaStuck"
    assert "state" not in record


def test_show_an_unknown_saga_fails_in_one_line(runner: CliRunner, sagas_url: str) -> None:
    result = invoke(runner, "sagas", "show", "order-99", "--store", sagas_url)
    assert result.exit_code == 1
    assert "order-99" in one_line_error(result)
    typed = invoke(runner, "sagas", "show", "order-1", "--store", sagas_url, "--type", "other")
    assert typed.exit_code == 1
    one_line_error(typed)


def test_an_empty_store_has_no_sagas(runner: CliRunner, tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "empty.db")
    asyncio.run(write_sagas_none(url))
    result = invoke(runner, "sagas", "list", "--store", url)
    assert result.exit_code == 0
    assert result.stdout == ""
    assert "no sagas" in result.stderr


async def write_sagas_none(url: str) -> None:
    store = await open_store(url)
    await store.aclose()


# --- retry and abort, refused ---------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (["retry", "order-1"], 2, "only a stuck saga can be retried"),
        (["abort", "order-2", "--reason", "x"], 2, "only a stuck saga"),
        (["retry", "order-99"], 1, "no saga of that id"),
        (["retry", "order-3", "--service", "billing"], 2, "is 'billing' its service?"),
        (["retry", "order-3", "--type", "ship-parcel"], 1, "no saga"),
    ],
)
def test_a_repair_the_saga_refuses_changes_nothing(
    runner: CliRunner, sagas_url: str, args: list[str], code: int, says: str
) -> None:
    before = {saga_id: asyncio.run(_stream_types(sagas_url, saga_id)) for saga_id in WRITTEN}
    result = invoke(runner, "sagas", *args, "--store", sagas_url, "--sagas", SAGAS_REF)
    assert result.exit_code == code, result.output
    assert says in one_line_error(result)
    after = {saga_id: asyncio.run(_stream_types(sagas_url, saga_id)) for saga_id in WRITTEN}
    assert after == before


@pytest.mark.parametrize(
    ("reference", "says"),
    [
        ("tests.cli.saga_samples:NOT_SAGAS", "holds str, not a Saga"),
        ("tests.cli.saga_samples:nothing", "has no attribute"),
        ("no_such_module_here:SAGAS", "cannot import"),
        ("tests.cli.saga_samples", "expected module:attribute"),
    ],
)
def test_definitions_that_are_not_sagas_are_refused(
    runner: CliRunner, sagas_url: str, reference: str, says: str
) -> None:
    result = invoke(runner, "sagas", "retry", "order-3", "--store", sagas_url, "--sagas", reference)
    assert result.exit_code == 2
    assert says in one_line_error(result)
    assert _status(sagas_url, "order-3") == "stuck"


def test_definitions_without_the_saga_type_are_refused(runner: CliRunner, sagas_url: str) -> None:
    result = invoke(
        runner, "sagas", "retry", "order-3", "--store", sagas_url,
        "--sagas", "tests.cli.saga_samples:OTHER_SAGAS",
    )  # fmt: skip
    assert result.exit_code == 2
    assert "no such saga" in one_line_error(result)
    assert _status(sagas_url, "order-3") == "stuck"


# --- retry and abort, done --------------------------------------------------------------


def test_abort_ends_a_stuck_saga_and_names_what_is_left_undone(
    runner: CliRunner, sagas_url: str
) -> None:
    result = invoke(
        runner, "sagas", "abort", "order-3", "--store", sagas_url, "--sagas", SAGAS_REF,
        "--reason", "refunded by hand", "--operator", "ana",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "aborted: place-order order-3" in result.stdout
    assert "not undone: reserve, charge" in result.stderr
    record = json.loads(
        invoke(runner, "sagas", "show", "order-3", "--store", sagas_url, "--json").stdout
    )
    assert record["status"] == "aborted"
    assert "refunded by hand" in record["timeline"][-1]["detail"]


def test_retry_records_a_fresh_attempt_for_the_service_to_send(
    runner: CliRunner, sagas_url: str
) -> None:
    result = invoke(
        runner, "sagas", "retry", "order-3", "--store", sagas_url, "--sagas", SAGAS_REF,
        "--operator", "ana", "--note", "payments fixed",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "retried: place-order order-3 (compensating)" in result.stdout
    types = asyncio.run(_stream_types(sagas_url, "order-3"))
    # The retry and its request in one append: the service's relay sends it.
    assert types[-3:] == ["SagaRetried", "SagaCompensationRequested", "eventcore.CommandRequested"]


# --- the operator's story, across processes --------------------------------------------


async def _eventcore(*args: str) -> tuple[int, str, str]:
    """The command line in a process of its own, while this one runs the services."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-P", "-c", "from eventcore.cli import main; main()", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env=process_environment(),
    )  # fmt: skip
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


# Beyond the suite's minute: three command-line processes start (a second or more each on
# a busy machine) beside four running services and a saga stuck after its retries.
@pytest.mark.timeout(90)
async def test_a_stuck_saga_is_listed_then_retried_from_the_command_line(tmp_path: Path) -> None:
    async with AsyncExitStack() as stack:
        bus, stores = await open_site("sqlite", tmp_path, stack)
        store_url = sqlite_url(tmp_path / "orders" / "events.db")
        async with world(bus, stores) as built:
            RULES.refuse("BookShipment")
            RULES.refuse("RefundPayment")
            worker = built.worker(ORDER_SAGA)
            async with running(worker):
                await worker.start(ORDER_SAGA, "order-8", Order("8", 10))
                stuck = await worker.wait(ORDER_SAGA, "order-8", timeout=40)
                assert stuck.status == "stuck"

                code, out, err = await _eventcore(
                    "sagas", "list", "--store", store_url, "--status", "stuck", "--json"
                )
                assert code == 0, err
                [listed] = [json.loads(line) for line in out.splitlines()]
                assert (listed["saga_id"], listed["step"]) == ("order-8", "charge")

                RULES.clear()  # payments is fixed
                code, out, err = await _eventcore(
                    "sagas", "retry", "order-8", "--store", store_url, "--sagas", SAGAS_REF,
                    "--operator", "ana",
                )  # fmt: skip
                assert code == 0, err
                assert "retried: place-order order-8" in out
                state = await worker.wait(ORDER_SAGA, "order-8", after=stuck, timeout=40)

                code, out, err = await _eventcore(
                    "sagas", "show", "order-8", "--store", store_url, "--json"
                )
            effects = {
                service: await built.effects(service, "8")
                for service in ("inventory", "payments", "shipping")
            }

    assert state.status == "compensated"
    assert state.compensated == ("charge", "reserve")
    assert effects == {
        "inventory": ["reserve", "undo reserve"],
        "payments": ["charge", "undo charge"],
        "shipping": [],
    }
    assert code == 0, err
    record = json.loads(out)
    assert record["status"] == "compensated"
    charge = next(step for step in record["steps"] if step["name"] == "charge")
    assert [a["outcome"] for a in charge["attempts"]][-1] == "succeeded"
    assert "SagaRetried" in [entry["event"] for entry in record["timeline"]]
