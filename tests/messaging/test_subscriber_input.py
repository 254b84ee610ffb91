"""A subscriber refuses bad settings when it is built, with a typed error that says why;
and what ``Received`` gives a handler: the inbox key and the metadata of what follows."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest

from eventcore import Event, EventRegistry, InvalidInput
from eventcore.errors import InvalidName
from eventcore.messaging import Bus, Delivery, DistributedEvent, Received, Subscriber
from eventcore.messaging.memory import MemoryBus


class Deposited(Event):
    amount: int


class Unregistered(Event):
    amount: int


registry = EventRegistry([Deposited])


async def ignore(received: Received) -> None:
    pass


@pytest.fixture
async def bus() -> AsyncIterator[Bus]:
    memory = MemoryBus()
    try:
        yield memory
    finally:
        await memory.aclose()


def build(bus: Bus, **changes: Any) -> Subscriber:
    settings: dict[str, Any] = {
        "topic": "deposits",
        "handlers": {Deposited: ignore},
        "group": "ledger",
        "registry": registry,
        **changes,
    }
    topic, handlers = settings.pop("topic"), settings.pop("handlers")
    return Subscriber(bus, topic, handlers, **settings)


async def test_good_settings_build_and_name_types_by_class_or_name(bus: Bus) -> None:
    assert build(bus).status().handled == 0
    assert build(bus, handlers={"Deposited": ignore}).topic == "deposits"


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"topic": "no spaces"}, "invalid topic"),
        ({"group": ""}, "invalid group"),
        ({"group": "x" * 65}, "invalid group"),
    ],
)
async def test_bad_names_are_refused(bus: Bus, changes: dict[str, Any], words: str) -> None:
    with pytest.raises(InvalidName, match=words):
        build(bus, **changes)


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"handlers": {}}, "at least one handler"),
        ({"handlers": {Unregistered: ignore}}, "registry does not know"),
        ({"handlers": {"Deposited": ignore, Deposited: ignore}}, "two handlers"),
        ({"handlers": {"": ignore}}, "neither an event type name"),
        ({"handlers": {int: ignore}}, "neither an event type name"),
        ({"handlers": {Deposited: "not callable"}}, "not callable"),
        ({"max_deliveries": 0}, "max_deliveries"),
        ({"max_deliveries": True}, "max_deliveries"),
        ({"batch_size": 0}, "batch_size"),
        ({"max_message_bytes": -1}, "max_message_bytes"),
        ({"ack_wait": 0}, "ack_wait"),
        ({"ack_wait": float("nan")}, "ack_wait"),
        ({"retry_poll": -1.0}, "retry_poll"),
        ({"retry_backoff": (0.1,)}, "retry_backoff"),
        ({"retry_backoff": ("a", 1.0)}, "retry_backoff"),
        ({"retry_backoff": (-1.0, 1.0)}, "must not be negative"),
        ({"retry_backoff": (1.0, float("inf"))}, "finite"),
        # Ten tries of up to 2 s each could outlast half of a 10 s ack wait.
        ({"max_deliveries": 10, "retry_backoff": (2.0, 2.0), "ack_wait": 10.0}, "ack_wait"),
    ],
)
async def test_bad_settings_are_refused(bus: Bus, changes: dict[str, Any], words: str) -> None:
    with pytest.raises(InvalidInput, match=words):
        build(bus, **changes)


def received(**envelope_changes: Any) -> Received:
    envelope = DistributedEvent(
        id="e-1",
        source="bank",
        type="Deposited",
        subject="account-a",
        time=datetime.now(UTC),
        data=msgspec.Raw(b'{"amount":1}'),
        specversion="1.0",
        datacontenttype="application/json",
        streamversion="1",
        traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        tracestate="vendor=1",
        **envelope_changes,
    )
    delivery = Delivery(
        topic="deposits",
        message_id="m-1",
        key="account-a",
        body=b"",
        partition=0,
        sequence=1,
        attempt=1,
        published_at=datetime.now(UTC),
    )
    return Received(envelope=envelope, event=Deposited(amount=1), delivery=delivery, group="g")


def test_received_keys_the_inbox_by_group_and_event() -> None:
    assert received().idempotency_key == "g:e-1"


def test_what_a_handler_causes_keeps_the_correlation_and_trace() -> None:
    metadata = received(correlationid="c-9", causationid="cmd-1").metadata
    assert metadata.correlation_id == "c-9"
    assert metadata.causation_id == "e-1"
    assert metadata.traceparent == "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    assert metadata.tracestate == "vendor=1"


def test_an_event_without_a_correlation_starts_one_with_its_own_id() -> None:
    assert received().metadata.correlation_id == "e-1"


@pytest.mark.parametrize(("ack_wait", "accepted"), [(6.0, True), (5.99, False)])
async def test_the_retries_of_one_message_may_wait_up_to_half_of_ack_wait_in_all(
    bus: Bus, ack_wait: float, accepted: bool
) -> None:
    # Three tries, so two waits between them, of at most 1 s and 2 s: 3 s in all, which
    # is half of 6 s (allowed) and more than half of 5.99 s (refused).
    settings = {"max_deliveries": 3, "retry_backoff": (1.0, 10.0), "ack_wait": ack_wait}
    if accepted:
        assert build(bus, **settings).status().handled == 0
    else:
        with pytest.raises(InvalidInput, match="could wait 3 s in all"):
            build(bus, **settings)


class _Executor:
    """Records what it is asked to run: a step refused must not reach it."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    async def execute(self, command: object, **options: Any) -> None:
        self.calls.append(options)


@pytest.mark.parametrize("step", ["", 7])
async def test_a_step_that_is_not_a_non_empty_string_is_refused_before_anything_runs(
    step: Any,
) -> None:
    executor = _Executor()
    with pytest.raises(InvalidInput, match="step must be a non-empty string"):
        await received().run(executor, object(), step=step)  # type: ignore[arg-type]
    assert executor.calls == []


async def test_a_step_keys_its_command_apart_from_the_event_s_other_commands() -> None:
    executor = _Executor()
    await received().run(executor, object(), step="open-wallet")  # type: ignore[arg-type]
    await received().run(executor, object())  # type: ignore[arg-type]
    assert [call["idempotency_key"] for call in executor.calls] == ["g:e-1:open-wallet", "g:e-1"]
