"""The projection-target contract: what a :class:`~eventcore.projection.target.Target`
owes the projection runner, as one pytest test class to inherit.

A target runs it by subclassing :class:`TargetContract` and providing two fixtures:

* ``make_target`` — ``await make_target()`` opens the target under test; called again in
  the same test it opens *the same* target once more (a new handle on the same file or
  schema; a ``MemoryTarget`` returns itself), so durability can be checked. The fixture
  closes what it opened when the test ends.
* ``recorder`` — a :class:`Recorder` for the target's transaction type: how a handler
  writes a key and reads the keys back. :data:`MEMORY_RECORDER` suits
  ``MemoryTransaction``, :data:`SQL_RECORDER` every ``SqlTransaction`` target.

Set ``atomic = False`` on a target that applies a batch before it moves the checkpoint
outside one transaction (``MemoryTarget``: at least once); the tests that a failed batch
writes nothing then do not apply. Needs pytest and pytest-asyncio (the ``testing`` extra).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, Protocol

import pytest

from eventcore.events import Event, EventRegistry
from eventcore.projection import MemoryTransaction, Projection, handles
from eventcore.projection.errors import CheckpointMoved, VersionRetired
from eventcore.projection.target import BUILDING, LIVE, Batch, Target
from eventcore.store.checkpoint import Checkpoint
from eventcore.types import Metadata, StoredEvent, StreamId, new_event_id

__all__ = [
    "MEMORY_RECORDER",
    "SQL_RECORDER",
    "MakeTarget",
    "Recorder",
    "TargetContract",
]

#: ``await make_target()`` opens the target under test (again: the same one).
MakeTarget = Callable[[], Awaitable[Target]]

STORE_ID = "6f0d3b1e-8a52-4c47-9d1e-2b7c5a9e4f10"
OTHER_STORE_ID = "0b9e1c2d-3f4a-4b5c-8d6e-7f8091a2b3c4"


class Recorder(Protocol):
    """How the contract's projection keeps its state in a target's transaction."""

    def setup(self, tx: Any) -> None:
        """Create an empty set of keys in a new version."""

    def record(self, tx: Any, key: str) -> None:
        """Add ``key``; adding one already there must fail the batch."""

    def read(self, tx: Any) -> list[str]:
        """Every key added so far."""


class _MemoryRecorder:
    def setup(self, tx: MemoryTransaction) -> None:
        tx.state["keys"] = []

    def record(self, tx: MemoryTransaction, key: str) -> None:
        if key in tx.state["keys"]:
            raise ValueError(f"{key} recorded twice")
        tx.state["keys"].append(key)

    def read(self, tx: MemoryTransaction) -> list[str]:
        return list(tx.state["keys"])


class _SqlRecorder:
    def setup(self, tx: Any) -> None:
        tx.execute("CREATE TABLE {recorded} (key TEXT PRIMARY KEY)")

    def record(self, tx: Any, key: str) -> None:
        tx.execute("INSERT INTO {recorded} VALUES (?)", (key,))

    def read(self, tx: Any) -> list[str]:
        return [str(row[0]) for row in tx.fetchall("SELECT key FROM {recorded}")]


MEMORY_RECORDER: Recorder = _MemoryRecorder()
SQL_RECORDER: Recorder = _SqlRecorder()


class Recorded(Event):
    key: str


class Probed(Event):
    """Not recorded: its handler reads what the version holds, for the test to see."""


_registry = EventRegistry([Recorded, Probed])
_positions = itertools.count(1)


class _Keys(Projection):
    """Records each ``Recorded`` event's key; a ``Probed`` event reads them back."""

    name = "contract_keys"
    tables = ("recorded",)

    def __init__(
        self, recorder: Recorder, *, fail_on: str | None = None, pause_once: float = 0.0
    ) -> None:
        super().__init__()
        self.recorder = recorder
        self.fail_on = fail_on
        #: Seconds the first ``Recorded`` handled waits (on the target's thread): a
        #: commit held open while another one starts.
        self.pause_once = pause_once
        self.seen: list[str] = []

    def setup(self, tx: Any) -> None:
        self.recorder.setup(tx)

    @handles(Recorded)
    def recorded(self, tx: Any, event: Recorded, stored: StoredEvent) -> None:
        if event.key == self.fail_on:
            raise RuntimeError(f"the handler fails on {event.key}")
        if self.pause_once:
            pause, self.pause_once = self.pause_once, 0.0
            time.sleep(pause)
        self.recorder.record(tx, event.key)

    @handles(Probed)
    def probed(self, tx: Any, event: Probed, stored: StoredEvent) -> None:
        self.seen = sorted(self.recorder.read(tx))


def _stored(event: Event, position: int) -> StoredEvent:
    encoded = _registry.encode(event)
    return StoredEvent(
        position,
        StreamId("contract"),
        position,
        new_event_id(),
        encoded.type,
        encoded.schema_version,
        encoded.data,
        Metadata(),
        datetime.now(UTC),
    )


@dataclass
class _Log:
    """Positions handed out in order, as a store's log would."""

    position: int = 0

    def events(self, *items: Event) -> list[StoredEvent]:
        stored = []
        for item in items:
            self.position += 1
            stored.append(_stored(item, self.position))
        return stored


def _batch(
    projection: _Keys,
    events: Sequence[StoredEvent],
    *,
    source: str = "orders",
    store_id: str,
    after: int | None = None,
) -> Batch:
    return Batch(
        source=source,
        events=list(events),
        handlers=projection.handlers_for(source),
        registry=_registry,
        store_id=store_id,
        after=after,
    )


class TargetContract:
    """Every guarantee of a projection target; subclass it and provide ``make_target``
    and ``recorder``."""

    #: Whether a batch and its checkpoint commit in one transaction (False: at least once).
    atomic: ClassVar[bool] = True

    @pytest.fixture
    def log(self) -> _Log:
        return _Log()

    async def _record(
        self,
        target: Target,
        projection: _Keys,
        version: int,
        log: _Log,
        *keys: str,
        source: str = "orders",
        store_id: str = STORE_ID,
    ) -> None:
        events = log.events(*(Recorded(key=key) for key in keys))
        await target.commit(
            projection, version, _batch(projection, events, source=source, store_id=store_id)
        )

    async def _keys(self, target: Target, projection: _Keys, version: int, log: _Log) -> list[str]:
        await target.commit(
            projection,
            version,
            _batch(projection, log.events(Probed()), source="probe", store_id=STORE_ID),
        )
        return projection.seen

    @pytest.mark.asyncio
    async def test_the_live_version_is_created_once_and_listed_live(
        self, make_target: MakeTarget, recorder: Recorder
    ) -> None:
        target = await make_target()
        projection = _Keys(recorder)

        first = await target.live_version(projection)
        again = await target.live_version(projection)

        assert first == again
        assert [(v.version, v.state) for v in await target.versions(projection.name)] == [
            (first, LIVE)
        ]
        assert await target.checkpoints(projection.name, first) == {}

    @pytest.mark.asyncio
    async def test_a_commit_applies_its_batch_and_moves_its_checkpoint_with_the_store_id(
        self, make_target: MakeTarget, recorder: Recorder, log: _Log
    ) -> None:
        target = await make_target()
        projection = _Keys(recorder)
        version = await target.live_version(projection)

        await self._record(target, projection, version, log, "a", "b", "c")

        checkpoints = await target.checkpoints(projection.name, version)
        assert checkpoints["orders"] == Checkpoint(position=3, store_id=STORE_ID)
        assert await self._keys(target, projection, version, log) == ["a", "b", "c"]
        (progress,) = [p for p in await target.progress(projection.name) if p.source == "orders"]
        assert (progress.version, progress.position, progress.events) == (version, 3, 3)

    @pytest.mark.asyncio
    async def test_each_source_keeps_its_own_checkpoint(
        self, make_target: MakeTarget, recorder: Recorder, log: _Log
    ) -> None:
        target = await make_target()
        projection = _Keys(recorder)
        version = await target.live_version(projection)

        await self._record(target, projection, version, log, "a", source="orders")
        await self._record(target, projection, version, log, "b", "c", source="payments")
        await self._record(target, projection, version, log, "d", source="orders")

        checkpoints = await target.checkpoints(projection.name, version)
        assert checkpoints["orders"].position == 4
        assert checkpoints["payments"].position == 3

    @pytest.mark.asyncio
    async def test_a_failing_batch_writes_neither_state_nor_checkpoint(
        self, make_target: MakeTarget, recorder: Recorder, log: _Log
    ) -> None:
        if not self.atomic:
            pytest.skip("this target applies a batch at least once, not in one transaction")
        target = await make_target()
        projection = _Keys(recorder, fail_on="c")
        version = await target.live_version(projection)
        await self._record(target, projection, version, log, "a")

        with pytest.raises(RuntimeError):
            await self._record(target, projection, version, log, "b", "c")

        checkpoints = await target.checkpoints(projection.name, version)
        assert checkpoints["orders"].position == 1
        assert await self._keys(target, projection, version, log) == ["a"]

    @pytest.mark.asyncio
    async def test_a_batch_applied_twice_fails_and_leaves_the_first(
        self, make_target: MakeTarget, recorder: Recorder, log: _Log
    ) -> None:
        # Idempotence is the checkpoint's job: a runner never sends a batch below it, and
        # the state must show it if one came twice (here, a repeated key fails).
        if not self.atomic:
            pytest.skip("this target applies a batch at least once, not in one transaction")
        target = await make_target()
        projection = _Keys(recorder)
        version = await target.live_version(projection)
        events = log.events(Recorded(key="a"), Recorded(key="b"))
        await target.commit(projection, version, _batch(projection, events, store_id=STORE_ID))

        with pytest.raises(Exception):  # noqa: B017, PT011 - the target's own error
            await target.commit(projection, version, _batch(projection, events, store_id=STORE_ID))

        assert await self._keys(target, projection, version, log) == ["a", "b"]
        assert (await target.checkpoints(projection.name, version))["orders"].position == 2

    @pytest.mark.asyncio
    async def test_a_batch_read_after_a_checkpoint_that_moved_is_refused_and_writes_nothing(
        self, make_target: MakeTarget, recorder: Recorder, log: _Log
    ) -> None:
        # Two runners of one projection (an old leader that has not noticed its lease
        # ran out, and the new one), each on its own handle of the target.
        target = await make_target()
        other = await make_target()
        projection = _Keys(recorder)
        version = await target.live_version(projection)
        first = log.events(Recorded(key="a"), Recorded(key="b"))
        await target.commit(
            projection, version, _batch(projection, first, store_id=STORE_ID, after=0)
        )

        with pytest.raises(CheckpointMoved) as refused:
            await other.commit(
                projection, version, _batch(projection, first, store_id=STORE_ID, after=0)
            )
        later = log.events(Recorded(key="c"))
        with pytest.raises(CheckpointMoved):
            await other.commit(
                projection, version, _batch(projection, later, store_id=STORE_ID, after=1)
            )

        assert (refused.value.expected, refused.value.found) == (0, 2)
        assert (await target.checkpoints(projection.name, version))["orders"].position == 2
        await other.commit(
            projection, version, _batch(projection, later, store_id=STORE_ID, after=2)
        )
        assert await self._keys(target, projection, version, log) == ["a", "b", "c"]
        (progress,) = [p for p in await target.progress(projection.name) if p.source == "orders"]
        assert (progress.position, progress.events) == (3, 3)

    @pytest.mark.asyncio
    async def test_of_two_runners_committing_the_same_batch_at_once_exactly_one_applies_it(
        self, make_target: MakeTarget, recorder: Recorder, log: _Log
    ) -> None:
        target = await make_target()
        other = await make_target()
        projection = _Keys(recorder)
        version = await target.live_version(projection)
        await self._record(target, projection, version, log, "a")
        events = log.events(Recorded(key="b"), Recorded(key="c"))
        # The first commit to get there holds its transaction open a while: the other
        # one arrives meanwhile (it must wait its turn, then see the checkpoint moved).
        projection.pause_once = 0.3

        outcomes = await asyncio.gather(
            *(
                handle.commit(
                    projection, version, _batch(projection, events, store_id=STORE_ID, after=1)
                )
                for handle in (target, other)
            ),
            return_exceptions=True,
        )

        assert sorted(type(outcome).__name__ for outcome in outcomes) == [
            "CheckpointMoved",
            "NoneType",
        ], outcomes
        assert await self._keys(target, projection, version, log) == ["a", "b", "c"]
        assert (await target.checkpoints(projection.name, version))["orders"].position == 3

    @pytest.mark.asyncio
    async def test_a_new_version_builds_beside_the_live_one_and_a_switch_retires_the_old(
        self, make_target: MakeTarget, recorder: Recorder, log: _Log
    ) -> None:
        target = await make_target()
        projection = _Keys(recorder)
        old = await target.live_version(projection)
        await self._record(target, projection, old, log, "old")

        new = await target.new_version(projection)
        states = {v.version: v.state for v in await target.versions(projection.name)}
        assert states == {old: LIVE, new: BUILDING}
        await self._record(target, projection, new, log, "new")
        assert await self._keys(target, projection, new, log) == ["new"]

        await target.switch(projection, new, keep_old=False)

        assert await target.live_version(projection) == new
        assert [v.version for v in await target.versions(projection.name)] == [new]
        with pytest.raises(VersionRetired):
            await self._record(target, projection, old, log, "late")

    @pytest.mark.asyncio
    async def test_a_commit_to_a_retired_version_writes_nothing(
        self, make_target: MakeTarget, recorder: Recorder, log: _Log
    ) -> None:
        target = await make_target()
        projection = _Keys(recorder)
        old = await target.live_version(projection)
        await self._record(target, projection, old, log, "a")
        new = await target.new_version(projection)
        await target.switch(projection, new, keep_old=True)

        with pytest.raises(VersionRetired):
            await self._record(target, projection, old, log, "b")

        assert (await target.checkpoints(projection.name, old))["orders"].position == 1

    @pytest.mark.asyncio
    async def test_reset_forgets_every_version_and_checkpoint(
        self, make_target: MakeTarget, recorder: Recorder, log: _Log
    ) -> None:
        target = await make_target()
        projection = _Keys(recorder)
        version = await target.live_version(projection)
        await self._record(target, projection, version, log, "a")

        await target.reset(projection.name)

        assert await target.versions(projection.name) == []
        fresh = await target.live_version(projection)
        assert await target.checkpoints(projection.name, fresh) == {}
        assert await self._keys(target, projection, fresh, log) == []

    @pytest.mark.asyncio
    async def test_bind_checkpoint_binds_only_a_checkpoint_without_a_store(
        self, make_target: MakeTarget, recorder: Recorder, log: _Log
    ) -> None:
        target = await make_target()
        projection = _Keys(recorder)
        version = await target.live_version(projection)
        # A batch without a store id stands for a checkpoint saved before they kept one.
        legacy = _batch(projection, log.events(Recorded(key="a")), store_id=STORE_ID)
        await target.commit(
            projection,
            version,
            Batch(legacy.source, legacy.events, legacy.handlers, legacy.registry, store_id=None),
        )
        await self._record(target, projection, version, log, "b", source="payments")

        await target.bind_checkpoint(projection.name, version, "orders", OTHER_STORE_ID)
        await target.bind_checkpoint(projection.name, version, "payments", OTHER_STORE_ID)

        checkpoints = await target.checkpoints(projection.name, version)
        assert checkpoints["orders"] == Checkpoint(position=1, store_id=OTHER_STORE_ID)
        assert checkpoints["payments"] == Checkpoint(position=2, store_id=STORE_ID)

    @pytest.mark.asyncio
    async def test_state_and_checkpoints_are_there_when_the_target_is_opened_again(
        self, make_target: MakeTarget, recorder: Recorder, log: _Log
    ) -> None:
        target = await make_target()
        projection = _Keys(recorder)
        version = await target.live_version(projection)
        await self._record(target, projection, version, log, "a", "b")

        reopened = await make_target()

        assert await reopened.live_version(projection) == version
        checkpoints = await reopened.checkpoints(projection.name, version)
        assert checkpoints["orders"] == Checkpoint(position=2, store_id=STORE_ID)
        assert await self._keys(reopened, projection, version, log) == ["a", "b"]
