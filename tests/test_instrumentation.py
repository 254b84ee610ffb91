"""The instrumentation seam: a recording hook sees, in order, what a command (with a
conflict and a retry), a relay publish and a subscriber delivery (with a retry and a dead
letter) did, on the memory and SQLite backends; a hook that raises breaks nothing; a
hook's metadata is stored with the events; the process default and ``NO_HOOKS``; only
the hooks that override a method hear it, in order, each with its own scope."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import msgspec
import pytest

from eventcore import (
    AppendResult,
    Command,
    CommandRejected,
    Event,
    EventRegistry,
    EventStore,
    Executor,
    MemoryTarget,
    MemoryTransaction,
    Metadata,
    Projection,
    ProjectionRunner,
    RetriesExhausted,
    RetryPolicy,
    Source,
    StoredEvent,
    StreamId,
    Writes,
    handles,
    open_store,
)
from eventcore.instrumentation import (
    NO_HOOKS,
    DeadLettered,
    DeliveryFinished,
    FanOut,
    Hooks,
    default_hooks,
    install_hooks,
    resolve,
)
from eventcore.messaging import Bus, open_bus
from eventcore.messaging.relay import Relay
from eventcore.messaging.subscriber import Received, Subscriber
from eventcore.messaging.topics import TopicMap
from eventcore.types import NewEvent

#: Bounds waits for what happens in milliseconds; only a hang reaches it.
PATIENCE = 10.0
ACCOUNT = StreamId("account-1")
TOPIC = "deposits"


class Deposited(Event):
    amount: int


registry = EventRegistry([Deposited])


class Deposit(Command[int]):
    account: StreamId
    amount: int

    def initial_state(self) -> int:
        return 0

    def apply(self, state: int, stream_id: StreamId, event: Event) -> int:
        assert isinstance(event, Deposited)
        return state + event.amount

    def handle(self, state: int) -> Writes:
        return {self.account: [Deposited(amount=self.amount)]}


class Recorder(Hooks):
    """Keeps every call as (method, the record's fields that do not vary by run)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def _keep(self, method: str, record: msgspec.Struct) -> str:
        fields = msgspec.structs.asdict(record)
        for varying in ("seconds", "occurred_at", "published_at", "metadata"):
            fields.pop(varying, None)
        for name, value in fields.items():
            if isinstance(value, BaseException):
                fields[name] = type(value).__name__
            elif name == "events" and not isinstance(value, int):
                fields[name] = [event.position for event in value]
        self.calls.append((method, fields))
        return method

    def command_started(self, event: Any) -> object:
        return self._keep("command_started", event)

    def command_retried(self, event: Any, scope: object) -> None:
        assert scope == "command_started"  # the scope its start returned
        self._keep("command_retried", event)

    def command_finished(self, event: Any, scope: object) -> None:
        assert scope == "command_started"
        self._keep("command_finished", event)

    def command_failed(self, event: Any, scope: object) -> None:
        self._keep("command_failed", event)

    def append_started(self, event: Any) -> object:
        return self._keep("append_started", event)

    def append_finished(self, event: Any, scope: object) -> None:
        assert scope == "append_started"
        self._keep("append_finished", event)

    def read_started(self, event: Any) -> object:
        return self._keep("read_started", event)

    def read_finished(self, event: Any, scope: object) -> None:
        self._keep("read_finished", event)

    def publish_started(self, event: Any) -> object:
        return self._keep("publish_started", event)

    def publish_finished(self, event: Any, scope: object) -> None:
        assert scope == "publish_started"
        self._keep("publish_finished", event)

    def relay_progress(self, event: Any) -> None:
        self._keep("relay_progress", event)

    def deliveries_fetched(self, event: Any) -> None:
        self._keep("deliveries_fetched", event)

    def delivery_started(self, event: Any) -> object:
        return self._keep("delivery_started", event)

    def delivery_retried(self, event: Any, scope: object) -> None:
        assert scope == "delivery_started"
        self._keep("delivery_retried", event)

    def delivery_finished(self, event: Any, scope: object) -> None:
        assert scope == "delivery_started"
        self._keep("delivery_finished", event)

    def dead_lettered(self, event: Any) -> None:
        self._keep("dead_lettered", event)

    def batch_started(self, event: Any) -> object:
        return self._keep("batch_started", event)

    def batch_applied(self, event: Any, scope: object) -> None:
        assert scope == "batch_started"
        self._keep("batch_applied", event)

    def take(self) -> list[tuple[str, dict[str, Any]]]:
        calls, self.calls = self.calls, []
        return calls


class Settled(Hooks):
    """Sets ``done`` once ``count`` messages were handled or parked."""

    def __init__(self, count: int) -> None:
        self.left = count
        self.done = asyncio.Event()

    def _one(self) -> None:
        self.left -= 1
        if self.left == 0:
            self.done.set()

    def delivery_finished(self, event: DeliveryFinished, scope: object) -> None:
        if event.outcome == "handled":
            self._one()

    def dead_lettered(self, event: DeadLettered) -> None:
        self._one()


class Raising(Hooks):
    """Raises in every method it has."""

    def __getattribute__(self, name: str) -> Any:
        if name.startswith("_"):
            return object.__getattribute__(self, name)

        def fail(*_: object) -> Any:
            raise RuntimeError(f"hook bug in {name}")

        return fail


class Rival:
    """A store on which another writer appends to the stream just before the first
    append through it: the command meets one conflict."""

    def __init__(self, inner: EventStore) -> None:
        self.inner = inner
        self.raced = False

    async def append(
        self,
        writes: Mapping[StreamId, Sequence[NewEvent]],
        *,
        expected: Mapping[StreamId, int],
        idempotency_key: str | None = None,
    ) -> AppendResult:
        if not self.raced:
            self.raced = True
            rival = registry.encode(Deposited(amount=100))
            await self.inner.append({ACCOUNT: [rival]}, expected={ACCOUNT: 0})
        return await self.inner.append(writes, expected=expected, idempotency_key=idempotency_key)

    async def read_stream(self, stream_id: StreamId, *, from_version: int = 1) -> list[StoredEvent]:
        return await self.inner.read_stream(stream_id, from_version=from_version)

    async def find_append(self, idempotency_key: str) -> AppendResult | None:
        return await self.inner.find_append(idempotency_key)


@dataclass
class Site:
    store: EventStore
    bus: Bus
    hooks: Hooks


@pytest.fixture(params=["memory", "sqlite"])
def backend(request: pytest.FixtureRequest) -> str:
    return cast(str, request.param)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


async def open_site(backend: str, tmp_path: Path, hooks: Hooks) -> tuple[EventStore, Bus]:
    if backend == "memory":
        store = await open_store("memory://", hooks=hooks)
        bus = await open_bus("memory://?partitions=1")
    else:
        store = await open_store(f"sqlite:///{tmp_path}/events.db", hooks=hooks)
        bus = await open_bus(f"sqlite:///{tmp_path}/bus.db?partitions=1")
    return store, bus


@pytest.fixture
async def site(backend: str, tmp_path: Path, recorder: Recorder) -> AsyncIterator[Site]:
    store, bus = await open_site(backend, tmp_path, recorder)
    async with store, bus:
        yield Site(store, bus, recorder)


async def run_command(site: Site) -> None:
    executor = Executor(
        cast(EventStore, Rival(site.store)),
        registry,
        retry=RetryPolicy(initial_delay=0.0),
        hooks=site.hooks,
    )
    result = await executor.execute(Deposit(account=ACCOUNT, amount=5))
    assert result.attempts == 2


async def relay_all(site: Site) -> None:
    relay = Relay(
        site.store, site.bus, TopicMap({Deposited: TOPIC}), service="bank", hooks=site.hooks
    )
    running = asyncio.create_task(relay.run())
    async with asyncio.timeout(PATIENCE):
        await relay.published(await site.store.last_position())
    relay.stop()
    await running


async def deliver_all(site: Site) -> Subscriber:
    """The first deposit fails once and is then handled; the second is refused and
    parked at once."""
    failed: set[str] = set()

    async def on_deposit(received: Received[Deposited]) -> None:
        if received.event.amount == 5:
            raise CommandRejected("deposits of 5 are refused")
        if received.envelope.id not in failed:
            failed.add(received.envelope.id)
            raise RuntimeError("a passing failure")

    settled = Settled(2)
    subscriber = Subscriber(
        site.bus,
        TOPIC,
        [on_deposit],
        group="ledger",
        registry=registry,
        retry_backoff=(0.001, 0.005),
        hooks=FanOut(site.hooks, settled),
    )
    running = asyncio.create_task(subscriber.run())
    async with asyncio.timeout(PATIENCE):
        await settled.done.wait()
    subscriber.stop()
    await running
    return subscriber


def command_sequence(store: str) -> list[tuple[str, dict[str, Any]]]:
    read = {"store": store, "stream_id": ACCOUNT, "from_version": 1}
    append = {"store": store, "events": 1, "streams": 1}
    return [
        ("command_started", {"command": "Deposit", "idempotency_key": None}),
        ("read_started", read),
        ("read_finished", {"store": store, "stream_id": ACCOUNT, "events": 0, "error": None}),
        # The rival's append, then the command's, refused.
        ("append_started", append),
        ("append_finished", {**append, "deduplicated": False, "last_position": 1, "error": None}),
        ("append_started", append),
        (
            "append_finished",
            {**append, "deduplicated": False, "last_position": 0, "error": "ConcurrencyConflict"},
        ),
        (
            "command_retried",
            {
                "command": "Deposit",
                "attempt": 1,
                "stream_id": ACCOUNT,
                "expected": 0,
                "actual": 1,
                "delay": 0.0,
            },
        ),
        ("read_started", read),
        ("read_finished", {"store": store, "stream_id": ACCOUNT, "events": 1, "error": None}),
        ("append_started", append),
        ("append_finished", {**append, "deduplicated": False, "last_position": 2, "error": None}),
        (
            "command_finished",
            {
                "command": "Deposit",
                "outcome": "written",
                "attempts": 2,
                "conflicts": 1,
                "streams_read": 2,
                "events": 1,
            },
        ),
    ]


def relay_sequence(bus: str) -> list[tuple[str, dict[str, Any]]]:
    return [
        (
            "publish_started",
            {"service": "bank", "events": [1, 2], "topics": (TOPIC,), "attempt": 1, "bus": bus},
        ),
        (
            "publish_finished",
            {"service": "bank", "events": 2, "per_topic": {TOPIC: 2}, "error": None},
        ),
        ("relay_progress", {"service": "bank", "published": 2, "position": 2, "lag_events": 0}),
    ]


def delivery_sequence(first: str, second: str, bus: str) -> list[tuple[str, dict[str, Any]]]:
    where = {"topic": TOPIC, "group": "ledger"}

    def started(message_id: str) -> tuple[str, dict[str, Any]]:
        return (
            "delivery_started",
            {
                **where,
                "message_id": message_id,
                "event_type": "Deposited",
                "stream_id": ACCOUNT,
                "attempt": 1,
                "bus": bus,
            },
        )

    return [
        started(first),
        ("delivery_retried", {**where, "message_id": first, "attempt": 1, "error": "RuntimeError"}),
        (
            "delivery_finished",
            {**where, "message_id": first, "outcome": "handled", "retries": 1, "error": None},
        ),
        started(second),
        (
            "delivery_finished",
            {
                **where,
                "message_id": second,
                "outcome": "dead",
                "retries": 0,
                "error": "CommandRejected: deposits of 5 are refused",
            },
        ),
        (
            "dead_lettered",
            {
                **where,
                "message_id": second,
                "reason": "CommandRejected: deposits of 5 are refused",
                "error_type": "CommandRejected",
                "attempts": 1,
            },
        ),
    ]


def without_delays(calls: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    """A retry's delay is drawn at random (jitter): it is checked apart."""
    for method, fields in calls:
        if method == "delivery_retried":
            assert 0.0 <= fields.pop("delay") <= 0.005
    return calls


async def test_a_command_with_a_conflict_reports_its_reads_appends_retry_and_outcome(
    site: Site, recorder: Recorder, backend: str
) -> None:
    await run_command(site)
    assert recorder.take() == command_sequence(backend)


async def test_a_command_out_of_retries_reports_its_failure(site: Site, recorder: Recorder) -> None:
    executor = Executor(
        cast(EventStore, Rival(site.store)),
        registry,
        retry=RetryPolicy(max_attempts=1),
        hooks=site.hooks,
    )
    with pytest.raises(RetriesExhausted):
        await executor.execute(Deposit(account=ACCOUNT, amount=5))
    assert recorder.take()[-1] == (
        "command_failed",
        {
            "command": "Deposit",
            "error": "RetriesExhausted",
            "attempts": 1,
            "conflicts": 1,
            "streams_read": 1,
        },
    )


async def test_a_relay_publish_reports_the_batch_and_how_far_it_got(
    site: Site, recorder: Recorder, backend: str
) -> None:
    await run_command(site)
    recorder.take()
    await relay_all(site)
    assert recorder.take() == relay_sequence(backend)


async def test_a_delivery_reports_its_retry_its_handling_and_its_dead_letter(
    site: Site, recorder: Recorder, backend: str
) -> None:
    await run_command(site)
    await relay_all(site)
    ids = [str(event.event_id) for event in await site.store.read_stream(ACCOUNT)]
    recorder.take()
    await deliver_all(site)
    calls = without_delays(recorder.take())
    fetched = [fields["count"] for method, fields in calls if method == "deliveries_fetched"]
    assert sum(fetched) == 2
    assert [call for call in calls if call[0] != "deliveries_fetched"] == delivery_sequence(
        *ids, backend
    )


class Balance(Projection):
    name = "balance"

    @handles(Deposited)
    async def deposited(self, tx: MemoryTransaction, event: Deposited, stored: StoredEvent) -> None:
        tx.state["total"] = tx.state.get("total", 0) + event.amount


async def test_a_projection_batch_reports_its_events_and_lag(
    site: Site, recorder: Recorder
) -> None:
    await run_command(site)
    recorder.take()
    target = MemoryTarget()
    runner = ProjectionRunner(
        Balance(), target, Source("bank", site.store, registry), hooks=site.hooks
    )
    await runner.catch_up()
    where = {"projection": "balance", "source": "bank", "version": 1}
    assert recorder.take() == [
        ("batch_started", {**where, "events": [1, 2]}),
        ("batch_applied", {**where, "events": 2, "position": 2, "lag_events": 0, "error": None}),
    ]


async def test_a_hook_that_raises_breaks_nothing_and_the_others_still_hear_everything(
    backend: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = Recorder()
    hooks = FanOut(Raising(), recorder)
    store, bus = await open_site(backend, tmp_path, hooks)
    async with store, bus:
        site = Site(store, bus, hooks)
        with caplog.at_level(logging.WARNING, logger="eventcore.instrumentation"):
            await run_command(site)
            await relay_all(site)
            subscriber = await deliver_all(site)
        assert (subscriber.status().handled, subscriber.status().dead_lettered) == (1, 1)
        assert [event.version for event in await store.read_stream(ACCOUNT)] == [1, 2]
    methods = [call[0] for call in recorder.calls]
    assert methods.count("command_finished") == 1
    assert methods.count("dead_lettered") == 1
    # Logged once per method, however often it raised (appends and reads raised thrice).
    logged = [r.getMessage() for r in caplog.records if r.name == "eventcore.instrumentation"]
    assert len(logged) == len(set(logged))
    assert sum("in append_started" in message for message in logged) == 1


class Tracing(Hooks):
    """Writes a trace context into what a command appends, as a tracing hook would."""

    def append_metadata(self, metadata: Metadata) -> Metadata:
        return msgspec.structs.replace(
            metadata, traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        )


async def test_the_metadata_a_hook_adds_is_stored_with_every_event_of_the_command() -> None:
    async with await open_store("memory://") as store:
        executor = Executor(store, registry, hooks=Tracing())
        await executor.execute(Deposit(account=ACCOUNT, amount=1), metadata=Metadata(actor="ann"))
        [stored] = await store.read_stream(ACCOUNT)
    assert stored.metadata.traceparent == "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    assert stored.metadata.actor == "ann"


async def test_objects_built_after_install_hooks_use_it_unless_given_no_hooks() -> None:
    recorder = Recorder()
    install_hooks(recorder)
    try:
        async with await open_store("memory://") as store:
            await Executor(store, registry).execute(Deposit(account=ACCOUNT, amount=1))
            await Executor(store, registry, hooks=NO_HOOKS).execute(
                Deposit(account=ACCOUNT, amount=1)
            )
    finally:
        install_hooks()
    commands = [fields for method, fields in recorder.calls if method == "command_finished"]
    assert len(commands) == 1
    # The store was built under the default too: both commands' appends were seen.
    assert [method for method, _ in recorder.calls].count("append_finished") == 2


class Named(Hooks):
    """Notes, in ``heard``, its name, the method and the scope it was handed."""

    def __init__(self, name: str, heard: list[tuple[str, str, object]]) -> None:
        self.name = name
        self.heard = heard


class StartsAndFinishes(Named):
    def command_started(self, event: Any) -> object:
        self.heard.append((self.name, "command_started", None))
        return f"scope of {self.name}"

    def command_finished(self, event: Any, scope: object) -> None:
        self.heard.append((self.name, "command_finished", scope))


class OnlyFinishes(Named):
    def command_finished(self, event: Any, scope: object) -> None:
        self.heard.append((self.name, "command_finished", scope))


async def test_only_the_hooks_that_override_a_method_hear_it_in_order_each_with_its_scope() -> None:
    heard: list[tuple[str, str, object]] = []
    hooks = FanOut(
        StartsAndFinishes("a", heard), OnlyFinishes("b", heard), StartsAndFinishes("c", heard)
    )
    assert hooks.wants("command_started")
    assert hooks.wants("command_finished")
    assert not hooks.wants("append_started", "read_finished", "dead_lettered")
    async with await open_store("memory://") as store:
        await Executor(store, registry, hooks=hooks).execute(Deposit(account=ACCOUNT, amount=1))
    assert heard == [
        ("a", "command_started", None),
        ("c", "command_started", None),
        ("a", "command_finished", "scope of a"),
        ("b", "command_finished", None),
        ("c", "command_finished", "scope of c"),
    ]


async def test_a_lone_hook_gets_its_own_scope_back_and_a_start_none_overrides_gives_none() -> None:
    heard: list[tuple[str, str, object]] = []
    async with await open_store("memory://") as store:
        for hook in (StartsAndFinishes("alone", heard), OnlyFinishes("finisher", heard)):
            await Executor(store, registry, hooks=hook).execute(Deposit(account=ACCOUNT, amount=1))
    assert heard == [
        ("alone", "command_started", None),
        ("alone", "command_finished", "scope of alone"),
        ("finisher", "command_finished", None),
    ]


def test_hooks_that_override_nothing_or_not_what_an_object_reports_resolve_to_none() -> None:
    assert resolve(Hooks()) is None
    assert resolve(FanOut(Hooks(), NO_HOOKS)) is None
    only = OnlyFinishes("b", [])
    assert resolve(only, "append_started", "append_finished") is None
    assert resolve(only, "append_started", "command_finished") is not None
    install_hooks(Hooks())
    try:
        assert default_hooks() is None
    finally:
        install_hooks()


async def test_a_lone_hook_that_raises_is_contained_and_logged_once_per_method(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hooks = FanOut(Raising())
    async with await open_store("memory://", hooks=hooks) as store:
        executor = Executor(store, registry, hooks=hooks)
        with caplog.at_level(logging.WARNING, logger="eventcore.instrumentation"):
            for _ in range(3):
                await executor.execute(Deposit(account=ACCOUNT, amount=1))
        assert [event.version for event in await store.read_stream(ACCOUNT)] == [1, 2, 3]
    logged = [r.getMessage() for r in caplog.records if r.name == "eventcore.instrumentation"]
    methods = [message.split(" in ")[1].split(" ")[0] for message in logged]
    assert sorted(methods) == sorted(
        [
            "append_metadata",
            "command_started",
            "command_finished",
            "read_started",
            "read_finished",
            "append_started",
            "append_finished",
        ]
    )


async def test_a_fan_out_inside_a_fan_out_is_heard_through() -> None:
    heard: list[tuple[str, str, object]] = []
    inner = FanOut(StartsAndFinishes("inner", heard))
    hooks = FanOut(inner, OnlyFinishes("outer", heard))
    async with await open_store("memory://") as store:
        await Executor(store, registry, hooks=hooks).execute(Deposit(account=ACCOUNT, amount=1))
    assert heard == [
        ("inner", "command_started", None),
        ("inner", "command_finished", "scope of inner"),
        ("outer", "command_finished", None),
    ]
