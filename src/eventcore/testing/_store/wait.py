"""Contract: ``wait_for_events`` — wake on a committed event past a mark, else time out."""

from __future__ import annotations

import asyncio

import pytest

from eventcore.errors import StoreClosed
from eventcore.store import EventStore
from eventcore.testing._builders import events
from eventcore.types import StreamId

A = StreamId("a")
#: Long enough never to be reached in a passing test: the answer must come from an append.
NEVER = 60.0


class WaitContract:
    """Part of :class:`StoreContract`: ``wait_for_events`` — wake on a committed
    event past a mark, else time out."""

    @pytest.mark.asyncio
    async def test_wait_returns_true_at_once_when_the_log_is_past_the_mark(
        self, store: EventStore
    ) -> None:
        await store.append({A: events(2)}, expected={A: 0})

        assert await store.wait_for_events(1, NEVER) is True

    @pytest.mark.asyncio
    async def test_wait_returns_false_when_the_timeout_passes_with_nothing_new(
        self,
        store: EventStore,
    ) -> None:
        await store.append({A: events(1)}, expected={A: 0})

        assert await store.wait_for_events(1, 0.01) is False

    @pytest.mark.asyncio
    async def test_wait_is_woken_by_an_append_through_the_store(self, store: EventStore) -> None:
        waiter = asyncio.create_task(store.wait_for_events(0, NEVER))

        await store.append({A: events(1)}, expected={A: 0})

        assert await waiter is True

    @pytest.mark.asyncio
    async def test_an_append_below_the_mark_does_not_end_the_wait(self, store: EventStore) -> None:
        await store.append({A: events(1)}, expected={A: 0})
        waiter = asyncio.create_task(store.wait_for_events(2, NEVER))

        await store.append({A: events(1)}, expected={A: 1})  # position 2: not past the mark
        await store.append({A: events(1)}, expected={A: 2})  # position 3: past it

        assert await waiter is True
        assert await store.last_position() == 3

    @pytest.mark.asyncio
    async def test_closing_the_store_ends_a_wait_with_store_closed(
        self, make_store: object
    ) -> None:
        store: EventStore = await make_store()  # type: ignore[operator]
        waiter = asyncio.create_task(store.wait_for_events(0, NEVER))
        # Whether the waiter has started or not, it must end in StoreClosed.

        await store.aclose()

        with pytest.raises(StoreClosed):
            await waiter

    @pytest.mark.asyncio
    async def test_wait_on_a_closed_store_raises_store_closed(self, make_store: object) -> None:
        store: EventStore = await make_store()  # type: ignore[operator]
        await store.aclose()

        with pytest.raises(StoreClosed):
            await store.wait_for_events(0, 0.01)
