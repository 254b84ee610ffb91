"""Seeded fault injection: an event store and a bus that misbehave the way real ones do.

:class:`FaultyStore` and :class:`FaultyBus` wrap a working store or bus and, from a
:class:`FaultPlan`, make some of its calls go wrong:

* **fail** — the call raises the typed outage error (``StoreUnavailable``,
  ``BusUnavailable``) before it reaches the backend: nothing happened;
* **lose the reply** — the call reaches the backend and *then* raises the outage error:
  it happened, but the caller cannot know (the case idempotence exists for);
* **delay** — the call waits a little first, so concurrent work interleaves differently;
* **drop the connection** — this call and the next ``outage`` calls fail, as while a
  client reconnects;
* **duplicate** (bus) — a fetched delivery is handed out again by a later fetch, as a
  redelivery after a lost acknowledgement would.

Every decision comes from ``random.Random(seed)`` drawn in call order, so a seed replays
the same schedule for the same sequence of calls. ``faults`` lists what was injected, so
a test can check that its schedule did inject something. Closing is never faulted, and
errors of the backend itself (``StoreClosed``, a conflict) pass through unchanged.

Needs nothing beyond eventcore: no pytest.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

import msgspec

from eventcore._closing import Closing
from eventcore.errors import BusUnavailable, InvalidInput, StoreUnavailable
from eventcore.messaging.bus import Bus, Consumer, Delivery
from eventcore.store import AppendResult, EventStore
from eventcore.testing._wrapping import BusWrapper, ConsumerWrapper
from eventcore.types import NewEvent, StoredEvent, StreamHead, StreamId

__all__ = ["FaultPlan", "FaultyBus", "FaultyConsumer", "FaultyStore"]

_T = TypeVar("_T")


@dataclass(frozen=True, kw_only=True)
class FaultPlan:
    """How often each fault happens: each rate is a probability per call (0 to 1).

    ``calls`` limits the plan to the calls of those names (``{"publish", "fetch"}``);
    ``None`` lets it touch every call but closing.
    """

    seed: int
    fail: float = 0.0
    lose_reply: float = 0.0
    delay: float = 0.0
    #: The longest delay, in seconds.
    max_delay: float = 0.005
    drop: float = 0.0
    #: Calls that fail after a dropped connection, the dropping call included.
    outage: int = 3
    duplicate: float = 0.0
    calls: Collection[str] | None = None

    def __post_init__(self) -> None:
        for name in ("fail", "lose_reply", "delay", "drop", "duplicate"):
            rate = getattr(self, name)
            if not 0.0 <= rate <= 1.0:
                raise InvalidInput(f"FaultPlan.{name} must be between 0 and 1, not {rate!r}")
        if self.max_delay < 0 or self.outage < 1:
            raise InvalidInput("FaultPlan.max_delay must be >= 0 and outage >= 1")


class _Schedule:
    """The plan's decisions, drawn in call order from one seeded generator."""

    def __init__(self, plan: FaultPlan, outage_error: type[Exception]) -> None:
        self.plan = plan
        self._rng = random.Random(plan.seed)
        self._error = outage_error
        self._down = 0
        self.faults: list[tuple[str, str]] = []

    def applies(self, call: str) -> bool:
        return self.plan.calls is None or call in self.plan.calls

    async def run(self, call: str, operation: Callable[[], Awaitable[_T]]) -> _T:
        if not self.applies(call):
            return await operation()
        plan, rng = self.plan, self._rng
        # Always draw the same numbers per call, whatever is decided, so a decision never
        # shifts the ones that follow.
        drop, fail, lose, delay, pause = (rng.random() for _ in range(5))
        if self._down == 0 and drop < plan.drop:
            self._down = plan.outage
            self.faults.append((call, "drop"))
        if self._down > 0:
            self._down -= 1
            raise self._error(f"injected: connection dropped during {call}")
        if fail < plan.fail:
            self.faults.append((call, "fail"))
            raise self._error(f"injected: {call} failed")
        if delay < plan.delay:
            self.faults.append((call, "delay"))
            await asyncio.sleep(pause * plan.max_delay)
        result = await operation()
        if lose < plan.lose_reply:
            self.faults.append((call, "lose_reply"))
            raise self._error(f"injected: the reply to {call} was lost")
        return result

    def duplicates(self) -> bool:
        if not self.applies("fetch") or self.plan.duplicate == 0.0:
            return False
        return self._rng.random() < self.plan.duplicate


class FaultyStore(Closing):
    """An :class:`~eventcore.store.EventStore` that passes every call to ``store``,
    faulted as ``plan`` says with ``StoreUnavailable``. Closing it closes ``store``."""

    def __init__(self, store: EventStore, plan: FaultPlan) -> None:
        self.inner = store
        self._schedule = _Schedule(plan, StoreUnavailable)

    @property
    def faults(self) -> list[tuple[str, str]]:
        """``(call, fault)`` for every fault injected so far, in order."""
        return self._schedule.faults

    async def append(
        self,
        writes: Mapping[StreamId, Sequence[NewEvent]],
        *,
        expected: Mapping[StreamId, int],
        idempotency_key: str | None = None,
    ) -> AppendResult:
        return await self._schedule.run(
            "append",
            lambda: self.inner.append(writes, expected=expected, idempotency_key=idempotency_key),
        )

    async def find_append(self, idempotency_key: str) -> AppendResult | None:
        return await self._schedule.run(
            "find_append", lambda: self.inner.find_append(idempotency_key)
        )

    async def read_stream(self, stream_id: StreamId, *, from_version: int = 1) -> list[StoredEvent]:
        return await self._schedule.run(
            "read_stream", lambda: self.inner.read_stream(stream_id, from_version=from_version)
        )

    async def read_all(
        self,
        *,
        after: int = 0,
        types: Collection[str] | None = None,
        batch_size: int = 1000,
        limit: int | None = None,
    ) -> AsyncIterator[list[StoredEvent]]:
        batches = self.inner.read_all(after=after, types=types, batch_size=batch_size, limit=limit)
        try:
            while True:
                # Each batch is one round trip to the backend: each may fail.
                try:
                    batch = await self._schedule.run("read_all", batches.__anext__)
                except StopAsyncIteration:
                    return
                yield batch
        finally:
            await batches.aclose()  # type: ignore[attr-defined]

    async def stream_version(self, stream_id: StreamId) -> int:
        return await self._schedule.run(
            "stream_version", lambda: self.inner.stream_version(stream_id)
        )

    async def list_streams(
        self, *, after: StreamId | None = None, limit: int = 100
    ) -> list[StreamHead]:
        return await self._schedule.run(
            "list_streams", lambda: self.inner.list_streams(after=after, limit=limit)
        )

    async def store_id(self) -> str:
        return await self._schedule.run("store_id", self.inner.store_id)

    async def last_position(self) -> int:
        return await self._schedule.run("last_position", self.inner.last_position)

    async def settled_position(self) -> int:
        return await self._schedule.run("settled_position", self.inner.settled_position)

    async def wait_for_events(self, after: int, timeout: float) -> bool:  # noqa: ASYNC109
        return await self._schedule.run(
            "wait_for_events", lambda: self.inner.wait_for_events(after, timeout)
        )

    async def aclose(self) -> None:
        await self.inner.aclose()


class FaultyBus(BusWrapper):
    """A :class:`~eventcore.messaging.bus.Bus` that passes every call to ``bus``,
    faulted as ``plan`` says with ``BusUnavailable``; its consumers fault ``fetch``,
    ``ack`` and ``nak`` and hand out duplicates. Closing it closes ``bus``.

    The dead-letter box is the inner bus's, unfaulted."""

    def __init__(self, bus: Bus, plan: FaultPlan) -> None:
        super().__init__(bus)
        self._schedule = _Schedule(plan, BusUnavailable)

    async def _call(self, call: str, operation: Callable[[], Awaitable[_T]]) -> _T:
        return await self._schedule.run(call, operation)

    @property
    def faults(self) -> list[tuple[str, str]]:
        """``(call, fault)`` for every fault injected so far, its consumers' included."""
        return self._schedule.faults

    def _wrap(self, consumer: Consumer, group: str) -> Consumer:
        return FaultyConsumer(consumer, self._schedule)


class FaultyConsumer(ConsumerWrapper):
    """A consumer of a :class:`FaultyBus`; see there."""

    def __init__(self, consumer: Consumer, schedule: _Schedule) -> None:
        super().__init__(consumer)
        self._schedule = schedule
        #: Deliveries to hand out again with the next fetch.
        self._again: list[Delivery] = []

    async def _call(self, call: str, operation: Callable[[], Awaitable[_T]]) -> _T:
        return await self._schedule.run(call, operation)

    async def fetch(self, max_messages: int, timeout: float) -> list[Delivery]:  # noqa: ASYNC109
        fetched = await super().fetch(max_messages, timeout)
        again, self._again = self._again, []
        for delivery in fetched:
            if self._schedule.duplicates():
                self._schedule.faults.append(("fetch", "duplicate"))
                # As the bus would redeliver it: the same message, one attempt further.
                self._again.append(msgspec.structs.replace(delivery, attempt=delivery.attempt + 1))
        return again + fetched
