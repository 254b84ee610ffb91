"""PostgreSQL reads: batched stream reads and the paged, prefetching global-log reader.

Reads started together (one ``gather``) are queued in the same pass of the event loop,
so the store answers them with one statement; each reader still gets only its stream's
events, and only its own failure.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import pytest

from eventcore.errors import EventcoreError, InvalidInput
from eventcore.store.postgres import PostgresStore
from eventcore.store.postgres._stream_reads import ReadBatcher, ReadOutcome, StreamRead
from eventcore.types import Metadata, StoredEvent
from tests.backends import POSTGRES_URL
from tests.builders import events, new_event, sid


@pytest.fixture
async def store(schema: str) -> AsyncIterator[PostgresStore]:
    async with await PostgresStore.open(f"{POSTGRES_URL}?schema={schema}") as opened:
        yield opened


def payloads(read: list[StoredEvent]) -> list[bytes]:
    return [event.data for event in read]


# --- batched stream reads ---------------------------------------------------------------


async def test_concurrent_reads_of_many_streams_share_one_statement(store: PostgresStore) -> None:
    for n in range(1, 41):
        await store.append({sid(f"s-{n}"): events(n % 7 + 1)}, expected={sid(f"s-{n}"): 0})
    before = store._reads.batches
    wanted = [(sid(f"s-{n}"), n % 3 + 1) for n in range(1, 41)] + [(sid("absent"), 1)]

    reads = await asyncio.gather(*(store.read_stream(s, from_version=v) for s, v in wanted))

    assert store._reads.batches - before == 1
    for (stream, from_version), read in zip(wanted, reads, strict=True):
        count = 0 if stream == "absent" else int(stream[2:]) % 7 + 1
        assert [e.version for e in read] == list(range(from_version, count + 1))
        assert {e.stream_id for e in read} <= {stream}
        assert payloads(read) == [b'{"n":%d}' % v for v in range(from_version, count + 1)]


async def test_the_same_stream_twice_in_a_batch_is_answered_twice(store: PostgresStore) -> None:
    await store.append({sid("a"): events(3)}, expected={sid("a"): 0})

    whole, tail = await asyncio.gather(
        store.read_stream(sid("a")), store.read_stream(sid("a"), from_version=3)
    )

    assert [e.version for e in whole] == [1, 2, 3]
    assert [e.version for e in tail] == [3]


async def test_a_batched_read_returns_what_a_lone_read_returns(store: PostgresStore) -> None:
    metadata = Metadata(correlation_id="c-1", actor="alice", extra={"k": "v"})
    await store.append(
        {sid("a"): [new_event("Opened", b"{}", metadata=metadata), *events(2)]},
        expected={sid("a"): 0},
    )
    await store.append({sid("b"): events(1)}, expected={sid("b"): 0})

    alone = await store.read_stream(sid("a"))
    batched, _ = await asyncio.gather(store.read_stream(sid("a")), store.read_stream(sid("b")))

    assert batched == alone
    assert alone[0].metadata == metadata
    assert alone[0].recorded_at.utcoffset() is not None


async def test_an_invalid_read_in_a_batch_fails_only_its_caller(store: PostgresStore) -> None:
    await store.append({sid("a"): events(2)}, expected={sid("a"): 0})
    await store.append({sid("b"): events(1)}, expected={sid("b"): 0})

    not_a_version: Any = "one"  # the server refuses it, which spoils the whole statement

    first, bad, second, beyond = await asyncio.gather(
        store.read_stream(sid("a")),
        store.read_stream(sid("a"), from_version=not_a_version),
        store.read_stream(sid("b")),
        store.read_stream(sid("b"), from_version=2**70),  # beyond bigint: nothing, as alone
        return_exceptions=True,
    )

    assert isinstance(bad, InvalidInput)
    assert isinstance(first, list)
    assert payloads(first) == [b'{"n":1}', b'{"n":2}']
    assert isinstance(second, list)
    assert payloads(second) == [b'{"n":1}']
    assert beyond == await store.read_stream(sid("b"), from_version=2**70) == []


async def test_a_read_cancelled_while_queued_leaves_the_others(store: PostgresStore) -> None:
    await store.append({sid("a"): events(1)}, expected={sid("a"): 0})
    await store.append({sid("b"): events(2)}, expected={sid("b"): 0})

    cancelled = asyncio.create_task(store.read_stream(sid("a")))
    kept = asyncio.create_task(store.read_stream(sid("b")))
    await asyncio.sleep(0)  # both are queued now, the batch not yet sent
    cancelled.cancel()

    assert payloads(await kept) == [b'{"n":1}', b'{"n":2}']
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert payloads(await store.read_stream(sid("a"))) == [b'{"n":1}']


async def test_a_queued_read_is_dropped_before_its_batch_is_sent() -> None:
    sent: list[list[StreamRead]] = []

    async def run(reads: list[StreamRead]) -> list[ReadOutcome]:
        sent.append(reads)
        return [[] for _ in reads]

    batcher = ReadBatcher(run)
    dropped = asyncio.create_task(batcher.read(sid("a"), 1))
    kept = asyncio.create_task(batcher.read(sid("b"), 1))
    await asyncio.sleep(0)
    dropped.cancel()

    assert await kept == []
    assert sent == [[(sid("b"), 1)]]
    assert dropped.cancelled()


async def test_each_reader_gets_its_own_outcome_and_a_failing_run_fails_its_batch() -> None:
    async def run(reads: list[StreamRead]) -> list[ReadOutcome]:
        if any(stream == "bug" for stream, _ in reads):
            raise RuntimeError("a bug in the runner")
        return [InvalidInput("bad") if stream == "bad" else [] for stream, _ in reads]

    batcher = ReadBatcher(run, max_reads=2)
    good, bad, other = await asyncio.gather(
        batcher.read(sid("good"), 1),
        batcher.read(sid("bad"), 1),
        batcher.read(sid("other"), 1),
        return_exceptions=True,
    )
    assert good == []
    assert other == []
    assert isinstance(bad, InvalidInput)
    assert batcher.batches == 2  # max_reads=2 splits one pass into two statements

    with pytest.raises(RuntimeError, match="a bug"):
        await batcher.read(sid("bug"), 1)


async def test_reads_fail_with_a_typed_error_after_close(store: PostgresStore) -> None:
    await store.aclose()
    with pytest.raises(EventcoreError):
        await store.read_stream(sid("a"))


# --- the global log: big pages, prefetch ---------------------------------------------------


async def test_read_all_cuts_big_pages_into_the_callers_batches(store: PostgresStore) -> None:
    for n in range(5):
        await store.append({sid(f"s-{n}"): events(700)}, expected={sid(f"s-{n}"): 0})

    batches = [b async for b in store.read_all(after=10, batch_size=300, limit=2_345)]

    assert [len(b) for b in batches][:3] == [300, 300, 300]
    assert all(len(b) <= 300 for b in batches)
    positions = [e.position for b in batches for e in b]
    assert positions == list(range(11, 11 + 2_345))


async def test_read_all_reads_the_whole_log_past_several_pages(store: PostgresStore) -> None:
    for n in range(12):
        await store.append({sid(f"s-{n}"): events(1_000)}, expected={sid(f"s-{n}"): 0})

    positions = [e.position async for b in store.read_all(batch_size=1_000) for e in b]

    assert positions == list(range(1, 12_001))


async def test_leaving_read_all_early_lets_the_prefetched_page_finish(
    store: PostgresStore,
) -> None:
    for n in range(3):
        await store.append({sid(f"s-{n}"): events(1_000)}, expected={sid(f"s-{n}"): 0})

    reader = store.read_all(batch_size=10)
    assert isinstance(reader, AsyncGenerator)
    first = await anext(reader)
    await reader.aclose()  # a page may still be in flight: it is left to finish

    assert [e.position for e in first] == list(range(1, 11))
    await asyncio.gather(*store._background)
    assert [e.position async for b in store.read_all(after=2_990) for e in b] == list(
        range(2_991, 3_001)
    )
