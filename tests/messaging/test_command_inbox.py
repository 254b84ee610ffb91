"""The receiver's inbox on every store: a command answered in its own append runs once
per idempotency key, is answered once per request, and no failure leaves events without
their reply or a reply without its events."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from eventcore import EventRegistry, EventStore, Executor, StreamId
from eventcore.errors import StoreUnavailable
from eventcore.messaging.commands import CommandReplied, inbox_stream
from eventcore.messaging.commands.answering import Request, answering
from eventcore.pipeline import CommandResult
from eventcore.testing import FaultPlan, FaultyStore
from eventcore.types import StoredEvent
from tests.backends import BACKENDS, skip_or_fail, unavailable_reason
from tests.messaging.stock import (
    OpenShelf,
    ReserveStock,
    StockReserved,
    executor,
    registry,
    reservation,
)

pytestmark = pytest.mark.timeout(60)

STOCK = StreamId("stock-plums")


@pytest.fixture(params=list(BACKENDS))
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[EventStore]:
    backend = BACKENDS[request.param]
    reason = unavailable_reason(backend)
    if reason is not None:
        skip_or_fail(reason)
    async with backend.open(tmp_path) as opened:
        yield opened


def request(key: str, correlation: str) -> Request:
    return Request(
        service="inventory",
        sender="orders",
        command_type="ReserveStock",
        idempotency_key=key,
        correlation_id=correlation,
        reply_to="orders-replies",
    )


async def run(
    runner: Executor, quantity: int, key: str, correlation: str, *, order_id: str = "o-1"
) -> CommandResult:
    """Run one delivery as the receiver does."""
    command = ReserveStock(stock=STOCK, quantity=quantity, order_id=order_id)
    return await runner.execute(
        answering(command, request(key, correlation), reservation),
        idempotency_key=f"command:inventory:orders:{correlation}",
    )


async def replies(store: EventStore, key: str) -> list[CommandReplied]:
    inbox = await store.read_stream(inbox_stream("orders", key))
    decoded = [registry().decode(event) for event in inbox]
    return [reply for reply in decoded if isinstance(reply, CommandReplied)]


def order_of(stored: StoredEvent) -> str:
    event = registry().decode(stored)
    assert isinstance(event, StockReserved)
    return event.order_id


async def test_racing_deliveries_of_one_request_answer_it_once(store: EventStore) -> None:
    runner = executor(store)
    await asyncio.gather(*(run(runner, 2, "k", "c-1") for _ in range(5)))

    assert len(await store.read_stream(STOCK)) == 1
    assert [reply.correlation_id for reply in await replies(store, "k")] == ["c-1"]


async def test_racing_requests_under_one_key_run_the_command_once(store: EventStore) -> None:
    """Five attempts of one saga step (one key, five correlation ids) at once: one runs,
    the others are answered with its result."""
    runner = executor(store)
    await asyncio.gather(*(run(runner, 2, "k", f"c-{attempt}") for attempt in range(5)))

    assert len(await store.read_stream(STOCK)) == 1
    answered = await replies(store, "k")
    assert sorted(reply.correlation_id for reply in answered) == [f"c-{n}" for n in range(5)]
    [first] = [reply for reply in answered if reply.first_correlation_id is None]
    assert all(reply.succeeded for reply in answered)
    assert {reply.first_correlation_id for reply in answered if reply is not first} == {
        first.correlation_id
    }
    assert {reply.result_value()["quantity"] for reply in answered} == {2}


async def test_a_refusal_answers_its_request_only(store: EventStore) -> None:
    runner = executor(store)
    refused = await run(runner, 50, "k", "c-1")
    again = await run(runner, 50, "k", "c-1")
    accepted = await run(runner, 5, "k", "c-2")

    assert [type(event).__name__ for event in refused.events] == ["CommandReplied"]
    assert again.deduplicated
    assert [type(event).__name__ for event in accepted.events] == [
        "StockReserved",
        "CommandReplied",
    ]
    assert [(r.correlation_id, r.succeeded) for r in await replies(store, "k")] == [
        ("c-1", False),
        ("c-2", True),
    ]


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_no_failed_or_lost_append_leaves_events_without_their_reply(
    store: EventStore, seed: int
) -> None:
    """Appends that fail, and appends that commit but whose answer is lost, then the
    delivery again (as the subscriber does): every request is answered exactly once,
    every key's effect happens at most once, and each effect shares its append with the
    reply that reports it."""
    faulty = FaultyStore(store, FaultPlan(seed=seed, fail=0.3, lose_reply=0.3, calls={"append"}))
    runner = Executor(faulty, EventRegistry([*registry()]))
    # Ten keys, three attempts each; quantities that run the stock (10) out part way.
    deliveries = [(f"k-{n % 10}", f"c-{n}", 1 + n % 3) for n in range(30)]
    for key, correlation, quantity in deliveries:
        while True:
            try:
                await run(runner, quantity, key, correlation, order_id=key)
                break
            except StoreUnavailable:
                continue  # the subscriber waits the outage out and runs it again
    assert faulty.faults, "the plan injected nothing"

    reserved = await store.read_stream(STOCK)
    by_key: dict[str, list[CommandReplied]] = {}
    for key in {key for key, _, _ in deliveries}:
        by_key[key] = await replies(store, key)
    # Every request answered once.
    answered = sorted(r.correlation_id for rs in by_key.values() for r in rs)
    assert answered == sorted(correlation for _, correlation, _ in deliveries)
    # One effect per key that succeeded, none for a key only ever refused.
    succeeded_keys = {key for key, rs in by_key.items() if any(r.succeeded for r in rs)}
    assert sorted(order_of(event) for event in reserved) == sorted(succeeded_keys)
    # Each effect committed with the reply that reports it, in one append.
    for event in reserved:
        key = order_of(event)
        [first] = [r for r in by_key[key] if r.succeeded and r.first_correlation_id is None]
        append = await store.find_append(f"command:inventory:orders:{first.correlation_id}")
        assert append is not None
        assert event.event_id in append.event_ids
        assert len(append.event_ids) == 2


async def test_a_key_that_succeeded_answers_with_its_success_though_the_command_would_now_refuse(
    store: EventStore,
) -> None:
    """``OpenShelf`` refuses a shelf that exists (and decides on a guessed empty state
    first, ``creates_streams``): a retry of the request that opened it must still hear
    that it succeeded."""
    runner = executor(store)
    shelf = StreamId("shelf-figs")

    async def open_shelf(correlation: str) -> CommandResult:
        return await runner.execute(
            answering(OpenShelf(shelf=shelf), request("open", correlation), None),
            idempotency_key=f"command:inventory:orders:{correlation}",
        )

    first = await open_shelf("c-1")
    again = await open_shelf("c-1")
    retried = await open_shelf("c-2")

    assert [type(event).__name__ for event in first.events] == ["ShelfOpened", "CommandReplied"]
    assert again.deduplicated
    [repeat] = retried.events
    assert isinstance(repeat, CommandReplied)
    assert repeat.succeeded
    assert repeat.first_correlation_id == "c-1"
    assert len(await store.read_stream(shelf)) == 1
