"""A second process on a SQLite store file, for ``test_sqlite.py`` and the bench.

Usage (every line it prints is one JSON object, flushed at once)::

    python -m tests.store.sqlite_child append URL STREAM COUNT
        appends COUNT events to STREAM, one append each; prints {"appended": [positions]}
    python -m tests.store.sqlite_child contend URL STREAMS SECONDS TYPE
        prints {"ready": true}, waits for a line on stdin, then for SECONDS appends one
        event of type TYPE at a time to one of STREAMS shared streams (s0, s1, ...) at the
        version it read, retrying a conflict; prints {"appends": n, "conflicts": n,
        "unavailable": n, "overtaken": the most commits of others during one of its
        appends, "worst_wait_ms": the longest one append call took}
    python -m tests.store.sqlite_child steady URL SECONDS TYPE INFLIGHT
        prints {"ready": true}, waits for a line on stdin, then for SECONDS keeps INFLIGHT
        appends in flight, each task appending events of type TYPE to a stream of its own
        (TYPE-0, TYPE-1, ...); prints {"appends": n, "worst_wait_ms": ...}
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time

from eventcore import open_store
from eventcore.errors import ConcurrencyConflict, StoreUnavailable
from eventcore.types import StreamId
from tests.builders import events


def say(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


async def append(url: str, stream: str, count: int) -> None:
    async with await open_store(url) as store:
        stream_id = StreamId(stream)
        positions = []
        for _ in range(count):
            version = await store.stream_version(stream_id)
            result = await store.append({stream_id: events(1)}, expected={stream_id: version})
            positions.append(result.last_position)
        say(appended=positions)


async def contend(url: str, streams: int, seconds: float, event_type: str) -> None:
    async with await open_store(url) as store:
        names = [StreamId(f"s{n}") for n in range(streams)]
        say(ready=True)
        await asyncio.to_thread(sys.stdin.readline)
        appends = conflicts = unavailable = overtaken = 0
        worst = 0.0
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            stream = random.choice(names)
            version = await store.stream_version(stream)
            head = await store.last_position()
            started = time.monotonic()
            try:
                result = await store.append(
                    {stream: events(1, event_type)}, expected={stream: version}
                )
                appends += 1
                # Commits by the other process between our look at the head and ours.
                overtaken = max(overtaken, result.last_position - head - 1)
            except ConcurrencyConflict:
                conflicts += 1
            except StoreUnavailable:
                unavailable += 1
            worst = max(worst, time.monotonic() - started)
        say(
            appends=appends,
            conflicts=conflicts,
            unavailable=unavailable,
            overtaken=overtaken,
            worst_wait_ms=round(worst * 1000, 1),
        )


async def steady(url: str, seconds: float, event_type: str, inflight: int) -> None:
    async with await open_store(url) as store:
        say(ready=True)
        await asyncio.to_thread(sys.stdin.readline)
        end = time.monotonic() + seconds
        waits: list[float] = []

        async def appender(number: int) -> int:
            stream, version = StreamId(f"{event_type}-{number}"), 0
            while time.monotonic() < end:
                started = time.monotonic()
                await store.append({stream: events(1, event_type)}, expected={stream: version})
                waits.append(time.monotonic() - started)
                version += 1
            return version

        done = await asyncio.gather(*(appender(n) for n in range(inflight)))
        say(appends=sum(done), worst_wait_ms=round(max(waits) * 1000, 1))


if __name__ == "__main__":
    mode, url, *rest = sys.argv[1:]
    if mode == "append":
        asyncio.run(append(url, rest[0], int(rest[1])))
    elif mode == "contend":
        asyncio.run(contend(url, int(rest[0]), float(rest[1]), rest[2]))
    elif mode == "steady":
        asyncio.run(steady(url, float(rest[0]), rest[1], int(rest[2])))
    else:
        raise SystemExit(__doc__)
