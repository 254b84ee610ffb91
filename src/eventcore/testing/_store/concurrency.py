"""Contract: concurrent read-then-append writers keep every stream and the log consistent.

Each writer reads the versions of the streams it decides on, appends with them, and on
``ConcurrencyConflict`` reads again and retries — what the command executor does, done
here with the store API alone. A barrier holds the writers' first appends until all have
read, so the first round is guaranteed to conflict on every backend (no timing involved).
"""

from __future__ import annotations

import asyncio
import random

import pytest

from eventcore.errors import ConcurrencyConflict
from eventcore.store import AppendResult, EventStore
from eventcore.testing._builders import new_event
from eventcore.testing._reading import read_log
from eventcore.types import StreamId

STREAMS = [StreamId("account-a"), StreamId("account-b"), StreamId("account-c")]
WRITERS = 24
APPENDS_PER_WRITER = 3
MAX_ATTEMPTS = 500


class ConcurrencyContract:
    """Part of :class:`StoreContract`: concurrent read-then-append writers keep
    every stream and the log consistent."""

    @pytest.mark.asyncio
    async def test_concurrent_writers_with_retries_keep_streams_contiguous(
        self,
        store: EventStore,
    ) -> None:
        barrier = asyncio.Barrier(WRITERS)
        results: list[AppendResult] = []
        conflicts: list[tuple[ConcurrencyConflict, list[StreamId]]] = []

        async def writer(number: int) -> None:
            rng = random.Random(number)  # seeded: each writer's choices are reproducible
            for append_number in range(APPENDS_PER_WRITER):
                # Read two streams, write one or both: read-only participants are checked too.
                read = rng.sample(STREAMS, 2)
                written = read if rng.random() < 0.5 else read[:1]
                for attempt in range(1, MAX_ATTEMPTS + 1):
                    expected = {stream: await store.stream_version(stream) for stream in read}
                    if append_number == 0 and attempt == 1:
                        await barrier.wait()
                    try:
                        result = await store.append(
                            {
                                stream: [new_event(data=b'{"writer":%d}' % number)]
                                for stream in written
                            },
                            expected=expected,
                        )
                    except ConcurrencyConflict as conflict:
                        conflicts.append((conflict, read))
                        continue
                    results.append(result)
                    break
                else:
                    raise AssertionError(f"writer {number} never got an append through")

        async with asyncio.TaskGroup() as group:
            for number in range(WRITERS):
                group.create_task(writer(number))

        assert len(results) == WRITERS * APPENDS_PER_WRITER
        assert conflicts, "the barrier should have made the first round conflict"
        assert all(conflict.stream_id in read for conflict, read in conflicts)

        written_ids = [event_id for result in results for event_id in result.event_ids]
        log = await read_log(store)
        positions = [event.position for event in log]
        assert len(set(written_ids)) == len(written_ids)
        assert sorted(event.event_id for event in log) == sorted(written_ids)
        assert positions == sorted(set(positions))
        assert sorted(positions) == sorted(p for result in results for p in result.positions)
        assert await store.last_position() == positions[-1]

        total = 0
        for stream in STREAMS:
            versions = [event.version for event in await store.read_stream(stream)]
            assert versions == list(range(1, len(versions) + 1)), stream
            assert await store.stream_version(stream) == len(versions)
            total += len(versions)
        assert total == len(log)

    @pytest.mark.asyncio
    async def test_racing_appends_from_one_read_let_exactly_one_win(
        self, store: EventStore
    ) -> None:
        stream = STREAMS[0]
        barrier = asyncio.Barrier(WRITERS)

        async def racer() -> AppendResult | ConcurrencyConflict:
            expected = await store.stream_version(stream)
            await barrier.wait()
            try:
                return await store.append({stream: [new_event()]}, expected={stream: expected})
            except ConcurrencyConflict as conflict:
                return conflict

        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(racer()) for _ in range(WRITERS)]

        outcomes = [task.result() for task in tasks]
        wins = [o for o in outcomes if isinstance(o, AppendResult)]
        losses = [o for o in outcomes if isinstance(o, ConcurrencyConflict)]
        assert len(wins) == 1
        assert len(losses) == WRITERS - 1
        assert {(c.expected, c.actual) for c in losses} == {(0, 1)}
        assert [event.event_id for event in await store.read_stream(stream)] == list(
            wins[0].event_ids
        )
