"""Contract: a store has an identity, made with it and kept for its lifetime
(protocol ``store_id``); checkpoints keep it to know which log they count."""

from __future__ import annotations

import uuid

import pytest

from eventcore.errors import StoreClosed
from eventcore.store import EventStore
from eventcore.testing._builders import events, sid
from eventcore.testing._store_fixtures import MakeStore


class IdentityContract:
    """Part of :class:`StoreContract`: a store has an identity, made with it and
    kept for its lifetime (protocol ``store_id``); checkpoints keep it to know which log
    they count."""

    @pytest.mark.asyncio
    async def test_a_store_id_is_a_uuid_that_stays_the_same(self, store: EventStore) -> None:
        first = await store.store_id()
        await store.append({sid("a"): events(3)}, expected={sid("a"): 0})

        assert uuid.UUID(first).version == 4
        assert str(uuid.UUID(first)) == first  # the usual text form, lower case
        assert await store.store_id() == first

    @pytest.mark.asyncio
    async def test_two_stores_have_different_ids(self, make_store: MakeStore) -> None:
        first = await make_store()
        second = await make_store()

        assert await first.store_id() != await second.store_id()

    @pytest.mark.asyncio
    async def test_a_closed_store_refuses_to_give_its_id(self, store: EventStore) -> None:
        await store.aclose()

        with pytest.raises(StoreClosed):
            await store.store_id()
