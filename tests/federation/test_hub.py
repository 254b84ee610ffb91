"""The hub worker on in-process buses: what it publishes, what it parks, when it acks."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest

from eventcore.errors import BusClosed, BusUnavailable, InvalidInput
from eventcore.federation import Hub, routed_id
from eventcore.instrumentation import DeadLettered, FederationBatch, Hooks
from eventcore.lifecycle import running
from eventcore.messaging import Bus, DistributedEvent, OutgoingMessage
from eventcore.messaging.envelope import decode_envelope, encode_envelope
from eventcore.messaging.memory import MemoryBus
from eventcore.testing.faults import FaultPlan, FaultyBus
from tests.federation.samples import config, data_of, envelope, rule

RENAME = rule(
    "users-to-billing",
    type="UserRegistered",
    extra='transforms = [{ op = "rename-type", to = "CustomerCreated" },'
    ' { op = "hash", fields = ["email"], key_env = "HUB_KEY" }]',
)
#: Fails on any event whose ``profile`` is not an object.
FRAGILE = rule(
    "profiles",
    type="UserRegistered",
    targets='[{ bus = "edge", topic = "profiles" }]',
    extra='transforms = [{ op = "drop", fields = ["profile.phone"] }]',
)


@pytest.fixture
async def buses() -> AsyncIterator[dict[str, Bus]]:
    main, edge = MemoryBus(partitions=4), MemoryBus(partitions=4)
    yield {"main": main, "edge": edge}
    await main.aclose()
    await edge.aclose()


async def publish(bus: Bus, *events: DistributedEvent, topic: str = "users") -> None:
    await bus.publish(
        [
            OutgoingMessage(topic, event.id, event.subject, encode_envelope(event))
            for event in events
        ]
    )


#: Only a hang reaches it: every test here normally reads what it waits for within
#: seconds; the seeded-faults one waits out an ack wait for every lost reply.
READ_DEADLINE = 45.0


async def read(bus: Bus, topic: str, count: int) -> list[DistributedEvent]:
    """The first ``count`` messages on ``topic``, as a new group sees them."""
    consumer = await bus.consumer(topic, "check")
    seen: list[DistributedEvent] = []
    try:
        async with asyncio.timeout(READ_DEADLINE):
            while len(seen) < count:
                deliveries = await consumer.fetch(count, 0.2)
                seen += [decode_envelope(d.body) for d in deliveries]
                if deliveries:
                    await consumer.ack(deliveries)
    finally:
        await consumer.aclose()
    return seen


async def settled(bus: Bus, topic: str, group: str = "federation") -> bool:
    """Whether the hub's group has nothing left to read on ``topic``."""
    consumer = await bus.consumer(topic, group, member="probe")
    try:
        return await consumer.fetch(1, 0.0) == []
    finally:
        await consumer.aclose()


async def until(condition: Any) -> None:
    """Polls: the hub's counters have no event to wait on."""
    async with asyncio.timeout(20):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


async def test_a_routed_copy_is_published_with_its_rule_and_origin(
    buses: dict[str, Bus],
) -> None:
    original = envelope(
        id="event-1",
        correlationid="c-1",
        causationid="x-1",
        traceparent="00-" + "a" * 32 + "-" + "b" * 16 + "-01",
    )
    await publish(buses["main"], original)
    hub = Hub(config(RENAME), buses)
    async with running(hub):
        (copy,) = await read(buses["edge"], "billing", 1)
    assert copy.id == routed_id("users-to-billing", "event-1")
    assert copy.type == "CustomerCreated"
    assert data_of(copy)["email"] != "ada@example.com"
    assert (copy.federationrule, copy.federationid, copy.federationorigin) == (
        "users-to-billing",
        "event-1",
        "main/users",
    )
    assert (copy.correlationid, copy.causationid, copy.traceparent) == (
        "c-1",
        "x-1",
        original.traceparent,
    )
    assert copy.subject == original.subject
    assert hub.status().routed == 1


async def test_a_failed_transformation_parks_the_event_and_the_others_go_on(
    buses: dict[str, Bus],
) -> None:
    bad = envelope(id="bad", data={"email": "e@x.org", "profile": ["not", "an", "object"]})
    good = envelope(id="good", data={"email": "f@x.org", "profile": {"phone": "123"}})
    await publish(buses["main"], bad, good)
    hub = Hub(config(RENAME, FRAGILE), buses)
    async with running(hub):
        billing = await read(buses["edge"], "billing", 2)
        profiles = await read(buses["edge"], "profiles", 1)
        await until(lambda: hub.status().received == 2)
    # The rule that could transform the bad event still routed it.
    assert {copy.federationid for copy in billing} == {"bad", "good"}
    assert [copy.federationid for copy in profiles] == ["good"]
    assert data_of(profiles[0]) == {"email": "f@x.org", "profile": {}}
    (letter,) = await buses["main"].dead_letters.letters(group="federation")
    assert (letter.topic, letter.message_id, letter.error_type) == (
        "users",
        "bad",
        "TransformFailed",
    )
    assert "rule 'profiles'" in letter.reason
    assert decode_envelope(letter.body) == bad
    assert hub.status().dead_lettered == 1
    assert await settled(buses["main"], "users")


async def test_a_letter_marked_for_retry_is_routed_again_and_dropped_once_it_goes_through(
    buses: dict[str, Bus],
) -> None:
    bad = envelope(id="bad", data={"email": "e@x.org", "profile": "not an object"})
    await publish(buses["main"], bad)
    hub = Hub(config(RENAME, FRAGILE), buses, retry_poll=0.05)
    async with running(hub):
        await until(lambda: hub.status().dead_lettered == 1)
        # Still failing: parked again, with the reason, one more attempt.
        (letter,) = await buses["main"].dead_letters.letters(group="federation")
        await buses["main"].dead_letters.request_retry(letter.letter_id)
        await until(lambda: hub.status().retried == 1)
    (again,) = await buses["main"].dead_letters.letters(group="federation")
    assert (again.status, again.attempts) == ("dead", letter.attempts + 1)
    assert "rule 'profiles'" in again.reason

    # The rule mended (it now drops the whole profile): the retry goes through.
    mended = FRAGILE.replace("profile.phone", "profile")
    await buses["main"].dead_letters.request_retry(again.letter_id)
    hub = Hub(config(RENAME, mended), buses, retry_poll=0.05)
    async with running(hub):
        (profile,) = await read(buses["edge"], "profiles", 1)
        await until(lambda: hub.status().retried == 1)
    assert profile.id == routed_id("profiles", "bad")
    assert data_of(profile) == {"email": "e@x.org"}
    assert await buses["main"].dead_letters.letters(group="federation") == []
    # The other rule's copy went out again under its id: the target kept one.
    counter = await buses["edge"].consumer("billing", "counter")
    assert len(await counter.fetch(10, 0.2)) == 1
    await counter.aclose()


async def test_an_unreadable_message_is_parked_and_the_hub_goes_on(buses: dict[str, Bus]) -> None:
    await buses["main"].publish([OutgoingMessage("users", "junk", "k", b"not json")])
    await publish(buses["main"], envelope(id="good"))
    hub = Hub(config(RENAME), buses)
    async with running(hub):
        (copy,) = await read(buses["edge"], "billing", 1)
        await until(lambda: hub.status().received == 2)
    assert copy.federationid == "good"
    (letter,) = await buses["main"].dead_letters.letters(group="federation")
    assert (letter.message_id, letter.error_type) == ("junk", "InvalidMessage")


async def test_an_event_no_rule_takes_is_acknowledged_and_counted(buses: dict[str, Bus]) -> None:
    await publish(buses["main"], envelope("OrderPlaced", id="other"))
    hub = Hub(config(RENAME), buses)
    async with running(hub):
        await until(lambda: hub.status().unmatched == 1)
    assert await settled(buses["main"], "users")
    assert hub.status().routed == 0


async def test_the_source_is_acknowledged_only_after_every_target_took_the_copies(
    buses: dict[str, Bus],
) -> None:
    broken_edge = FaultyBus(buses["edge"], FaultPlan(seed=1, fail=1.0, calls={"publish"}))
    await publish(buses["main"], envelope(id="event-1"))
    hub = Hub(config(RENAME), {"main": buses["main"], "edge": broken_edge}, retry_poll=0.05)
    async with running(hub):
        await until(lambda: len(broken_edge.faults) >= 3)
        assert hub.status().received == 0
        assert hub.status().last_error is not None
    assert not await settled(buses["main"], "users")
    # Once the target takes copies again, the event goes through, under the same id.
    hub = Hub(config(RENAME), buses)
    async with running(hub):
        (copy,) = await read(buses["edge"], "billing", 1)
    assert copy.id == routed_id("users-to-billing", "event-1")


async def test_copies_go_to_every_target_on_every_bus(buses: dict[str, Bus]) -> None:
    fan = rule(
        "fan-out",
        targets='[{ bus = "edge", topic = "billing" }, { bus = "main", topic = "audit" }]',
    )
    await publish(buses["main"], envelope(id="event-1"))
    hub = Hub(config(fan), buses)
    async with running(hub):
        (billing,) = await read(buses["edge"], "billing", 1)
        (audit,) = await read(buses["main"], "audit", 1)
    assert billing == audit
    assert billing.id == routed_id("fan-out", "event-1")


class Recorder(Hooks):
    def __init__(self) -> None:
        self.batches: list[FederationBatch] = []
        self.letters: list[DeadLettered] = []

    def federation_batch(self, event: FederationBatch) -> None:
        self.batches.append(event)

    def dead_lettered(self, event: DeadLettered) -> None:
        self.letters.append(event)


async def test_each_batch_is_reported_to_the_hooks_by_rule_and_outcome(
    buses: dict[str, Bus],
) -> None:
    events = [
        envelope(id="a", data={"email": "a@x.org", "profile": {}}),
        envelope(id="b", data={"email": "b@x.org", "profile": 7}),
        envelope("OrderPlaced", id="c"),
    ]
    await publish(buses["main"], *events)
    recorder = Recorder()
    hub = Hub(config(RENAME, FRAGILE), buses, hooks=recorder)
    async with running(hub):
        await until(lambda: hub.status().received == 3)
    counts: dict[tuple[str, str], int] = {}
    for batch in recorder.batches:
        assert (batch.group, batch.origin) == ("federation", "main/users")
        assert batch.lag_seconds >= 0
        for name, outcome, n in batch.outcomes:
            counts[name, outcome] = counts.get((name, outcome), 0) + n
    assert counts == {
        ("users-to-billing", "routed"): 3 - 1,
        ("profiles", "routed"): 1,
        ("profiles", "failed"): 1,
        ("", "unmatched"): 1,
    }
    assert [letter.message_id for letter in recorder.letters] == ["b"]


async def test_under_seeded_faults_every_copy_arrives_once_and_each_stream_in_order(
    buses: dict[str, Bus],
) -> None:
    seed = random.randrange(2**32)
    print(f"seed {seed}")
    rng = random.Random(seed)
    events = [
        msgspec.structs.replace(
            envelope(id=f"e{n}"), subject=f"user-{n % 7}", streamversion=str(n // 7 + 1)
        )
        for n in range(300)
    ]
    for start in range(0, len(events), 50):
        await publish(buses["main"], *events[start : start + 50])
    # No ``duplicate``: it hands a delivery out again past later ones of its partition,
    # which no bus does (each keeps a partition's redeliveries in order).
    # Nor ``consumer``: a hub that cannot join its group fails run(), as a subscriber does.
    calls = {"publish", "fetch", "ack", "nak"}
    plan = FaultPlan(seed=rng.randrange(2**32), fail=0.1, lose_reply=0.1, calls=calls)
    main, edge = FaultyBus(buses["main"], plan), FaultyBus(buses["edge"], plan)
    hub = Hub(
        config(RENAME), {"main": main, "edge": edge}, batch_size=20, retry_poll=0.01, ack_wait=2
    )
    async with running(hub):
        copies = await read(buses["edge"], "billing", len(events))
    assert main.faults
    assert edge.faults
    assert sorted(c.federationid or "" for c in copies) == sorted(e.id for e in events)
    versions: dict[str, list[int]] = {}
    for copy in copies:
        versions.setdefault(copy.subject, []).append(copy.stream_version)
    assert all(seen == sorted(seen) for seen in versions.values())


def test_every_bus_alias_needs_an_open_bus() -> None:
    with pytest.raises(InvalidInput, match="edge"):
        Hub(config(RENAME), {"main": MemoryBus()})


def test_a_hub_takes_a_loaded_configuration_only() -> None:
    with pytest.raises(InvalidInput, match="HubConfig"):
        Hub(msgspec.to_builtins({"rules": []}), {})  # type: ignore[arg-type]


async def test_a_closed_bus_ends_run_with_bus_closed(buses: dict[str, Bus]) -> None:
    hub = Hub(config(RENAME), buses)
    running_hub = asyncio.create_task(hub.run())
    await hub.ready()
    await buses["main"].aclose()
    with pytest.raises(BusClosed):
        async with asyncio.timeout(10):
            await running_hub


async def test_a_hub_that_cannot_join_a_source_fails_run_and_ready(buses: dict[str, Bus]) -> None:
    down = FaultyBus(buses["main"], FaultPlan(seed=1, fail=1.0, calls={"consumer"}))
    hub = Hub(config(RENAME), {"main": down, "edge": buses["edge"]})
    with pytest.raises(BusUnavailable):
        await hub.run()
    with pytest.raises(BusUnavailable):
        await hub.ready()


async def test_stop_before_run_returns_at_once(buses: dict[str, Bus]) -> None:
    hub = Hub(config(RENAME), buses)
    hub.stop()
    await hub.run()
    assert hub.status().received == 0
