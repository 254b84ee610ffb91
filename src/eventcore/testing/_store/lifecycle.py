"""Contract: a closed store refuses every call; closing is idempotent (protocol ``aclose``),
and ``async with`` closes it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from eventcore.errors import StoreClosed, StoreError
from eventcore.store import EventStore
from eventcore.testing._builders import events
from eventcore.testing._reading import read_log
from eventcore.testing._store_fixtures import MakeStore
from eventcore.types import StreamId

A = StreamId("a")


async def _read_all(store: EventStore) -> Any:
    return await read_log(store)


CALLS: list[Any] = [
    pytest.param(lambda s: s.append({A: events(1)}, expected={A: 1}), id="append"),
    pytest.param(lambda s: s.read_stream(A), id="read_stream"),
    pytest.param(_read_all, id="read_all"),
    pytest.param(lambda s: s.stream_version(A), id="stream_version"),
    pytest.param(lambda s: s.list_streams(), id="list_streams"),
    pytest.param(lambda s: s.last_position(), id="last_position"),
    pytest.param(lambda s: s.settled_position(), id="settled_position"),
]


class LifecycleContract:
    """Part of :class:`StoreContract`: a closed store refuses every call; closing
    is idempotent (protocol ``aclose``), and ``async with`` closes it."""

    @pytest.mark.parametrize("call", CALLS)
    @pytest.mark.asyncio
    async def test_closed_store_raises_store_closed(
        self, store: EventStore, call: Callable[[EventStore], Awaitable[Any]]
    ) -> None:
        await store.append({A: events(1)}, expected={A: 0})
        await store.aclose()

        with pytest.raises(StoreClosed) as caught:
            await call(store)

        assert isinstance(caught.value, StoreError)

    @pytest.mark.asyncio
    async def test_aclose_twice_is_a_no_op(self, store: EventStore) -> None:
        await store.aclose()

        await store.aclose()

        with pytest.raises(StoreClosed):
            await store.last_position()

    @pytest.mark.asyncio
    async def test_async_with_gives_the_store_and_closes_it_however_the_block_ends(
        self,
        store: EventStore,
    ) -> None:
        async with store as entered:
            assert entered is store
            await store.append({A: events(1)}, expected={A: 0})
        with pytest.raises(StoreClosed):
            await store.last_position()

    @pytest.mark.asyncio
    async def test_async_with_closes_the_store_when_the_block_raises(
        self, store: EventStore
    ) -> None:
        with pytest.raises(LookupError):
            async with store:
                raise LookupError("the caller's own failure")
        with pytest.raises(StoreClosed):
            await store.last_position()

    @pytest.mark.asyncio
    async def test_closing_one_store_leaves_another_open(self, make_store: MakeStore) -> None:
        first = await make_store()
        second = await make_store()

        await first.aclose()
        await second.append({A: events(1)}, expected={A: 0})

        assert await second.stream_version(A) == 1

    @pytest.mark.asyncio
    async def test_fresh_stores_do_not_share_events(self, make_store: MakeStore) -> None:
        first = await make_store()
        second = await make_store()

        await first.append({A: events(2)}, expected={A: 0})

        assert await second.stream_version(A) == 0
        assert await second.last_position() == 0

    @pytest.mark.asyncio
    async def test_store_satisfies_the_event_store_protocol(self, store: EventStore) -> None:
        assert isinstance(store, EventStore)
