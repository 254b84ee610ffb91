"""Reading the PostgreSQL global log: big pages, fetched one ahead, cut at the xmin horizon.

``read_all`` hands its caller batches of ``batch_size`` events and asks the server for
pages of at least ``PAGE_ROWS``, so a caller's small batches still share statements.
While the caller works through a page, the next one is already being fetched (one page
in flight, so memory stays bounded by two pages): the server's work and the round trip
overlap the caller's.

The horizon rule (``_read``, proof in ``migrations/0002_append_events.sql``) is kept page by
page: each statement returns, with every row, whether the row is settled in that statement's
own snapshot, and only the leading run of settled rows is used. The next page starts after
the last event returned, never after an unsettled row. A page that stopped at an unsettled
row is followed by another at once (rows were returned: the writer may be done by now); a
page that stopped at one before returning anything waits for the writer, with growing
pauses, rather than skipping past it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Collection
from typing import Any, Final, NamedTuple

from eventcore.store.postgres._read import Fetch, settled_count, to_events
from eventcore.types import StoredEvent

__all__ = ["PAGE_ROWS", "LogQueries", "read_log"]

#: The fewest rows per statement: enough to spread the per-statement cost (a round trip,
#: the horizon's snapshot) thin. Larger pages measured no faster here (100k-event log,
#: median of 9: 139k events/s with 1,000, 127k with 5,000): past this, the cost is per
#: row, and bigger pages only keep more objects alive for the garbage collector.
PAGE_ROWS: Final = 1_000
#: How a reader blocked behind an in-flight older transaction polls: first and longest pause.
#: Most such transactions are group commits a millisecond from done, so the first look
#: comes soon; the doubling keeps a long-open transaction from costing a busy loop.
FIRST_PAUSE: Final = 0.0003
LONGEST_PAUSE: Final = 0.1


class LogQueries(NamedTuple):
    """The two page statements, rendered for the store's schema."""

    page: str
    page_of_types: str


class _Page(NamedTuple):
    events: list[StoredEvent]
    #: An unsettled row ended the page early: there may be more right behind it.
    blocked: bool
    #: The page came back as large as asked: there may be more after it.
    full: bool


async def _fetch_page(
    fetch: Fetch, queries: LogQueries, cursor: int, size: int, types: list[str] | None
) -> _Page:
    if types is None:
        rows = await fetch("read_all", queries.page, (cursor, size), binary=True)
    else:
        rows = await fetch(
            "read_all", queries.page_of_types, (types, cursor, size, size), binary=True
        )
    settled = settled_count(rows)
    events = to_events(rows if settled == len(rows) else rows[:settled])
    return _Page(events, settled < len(rows), len(rows) == size)


async def read_log(
    fetch: Fetch,
    queries: LogQueries,
    *,
    after: int,
    types: Collection[str] | None,
    batch_size: int,
    limit: int | None,
    background: set[asyncio.Task[Any]],
) -> AsyncIterator[list[StoredEvent]]:
    """The events after position ``after`` in batches (see the module doc).

    ``background`` keeps a page still in flight when the caller stops early: it is left
    to finish rather than cancelled, because cancelling a statement mid-flight costs the
    pool its connection.
    """
    wanted = sorted(set(types)) if types is not None else None
    if wanted == [] or batch_size <= 0:
        return
    page_rows = max(batch_size, PAGE_ROWS)
    cursor = max(after, 0)
    remaining = limit
    loop = asyncio.get_running_loop()

    def ask(cursor: int) -> asyncio.Task[_Page] | None:
        size = page_rows if remaining is None else min(page_rows, remaining)
        if size <= 0:
            return None
        return loop.create_task(_fetch_page(fetch, queries, cursor, size, wanted))

    pending = ask(cursor)
    pause = FIRST_PAUSE
    try:
        while pending is not None:
            page = await pending
            pending = None
            events = page.events
            if events:
                cursor = events[-1].position
                if remaining is not None:
                    remaining -= len(events)
                pause = FIRST_PAUSE
                if page.blocked or page.full:
                    pending = ask(cursor)  # the next page, fetched while the caller works
                for start in range(0, len(events), batch_size):
                    yield events[start : start + batch_size]
                continue
            if not page.blocked:
                return  # the head of the log, as this page saw it
            await asyncio.sleep(pause)
            pause = min(pause * 2, LONGEST_PAUSE)
            pending = ask(cursor)
    finally:
        if pending is not None:
            _leave_running(pending, background)


def _leave_running(task: asyncio.Task[Any], background: set[asyncio.Task[Any]]) -> None:
    """Let an unwanted page finish on its own; nobody will read its outcome."""
    if task.done():
        _ignore(task)
        return
    background.add(task)
    task.add_done_callback(background.discard)
    task.add_done_callback(_ignore)


def _ignore(task: asyncio.Task[Any]) -> None:
    # Retrieve the outcome, so asyncio does not log "exception was never retrieved".
    if not task.cancelled():
        task.exception()
