"""Contract, property-based: random appends, conflicts and idempotent retries keep every
backend in step with a model that is just a list per stream and one global list.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventcore.errors import ConcurrencyConflict
from eventcore.store import AppendResult, EventStore
from eventcore.testing._builders import new_event
from eventcore.testing._reading import all_heads, read_log
from eventcore.testing._store_fixtures import MakeStore
from eventcore.types import EventId, StreamId

NAMES = ["a", "b", "c", "d"]
KEYS = ["k1", "k2", "k3"]


@dataclass(frozen=True)
class Append:
    writes: dict[str, int]  # stream → how many events
    read_only: frozenset[str]
    skew: dict[str, int]  # stream → offset added to its true version in ``expected``
    key: str | None


@st.composite
def appends(draw: st.DrawFn) -> Append:
    written = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=3, unique=True))
    writes = {name: draw(st.integers(1, 3)) for name in written}
    read_only = draw(st.frozensets(st.sampled_from([n for n in NAMES if n not in writes])))
    declared = sorted(writes.keys() | read_only)
    skewed = draw(st.lists(st.sampled_from(declared), max_size=2, unique=True))
    skew = {name: draw(st.sampled_from([-2, -1, 1, 2])) for name in skewed}
    key = draw(st.none() | st.sampled_from(KEYS))
    return Append(writes, read_only, skew, key)


@dataclass
class Model:
    streams: dict[str, list[EventId]] = field(default_factory=dict)
    log: list[EventId] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)
    keys: dict[str, AppendResult] = field(default_factory=dict)

    def version(self, name: str) -> int:
        return len(self.streams.get(name, []))


async def apply(store: EventStore, model: Model, op: Append) -> None:
    """Run ``op`` on the store and on the model, checking the store's answer as we go."""
    expected = {
        StreamId(name): max(0, model.version(name) + op.skew.get(name, 0))
        for name in op.writes.keys() | op.read_only
    }
    batches = {StreamId(name): [new_event() for _ in range(n)] for name, n in op.writes.items()}
    stale = {s: v for s, v in expected.items() if v != model.version(s)}

    if op.key is not None and op.key in model.keys:
        first = model.keys[op.key]
        result = await store.append(batches, expected=expected, idempotency_key=op.key)
        assert result.deduplicated is True
        assert (result.positions, result.event_ids) == (first.positions, first.event_ids)
        assert result.stream_versions == first.stream_versions
        return
    if stale:
        with pytest.raises(ConcurrencyConflict) as caught:
            await store.append(batches, expected=expected, idempotency_key=op.key)
        conflict = caught.value
        assert conflict.stream_id in stale
        assert conflict.expected == stale[StreamId(conflict.stream_id)]
        assert conflict.actual == model.version(conflict.stream_id)
        return

    result = await store.append(batches, expected=expected, idempotency_key=op.key)
    assert result.deduplicated is False
    ids = [event.event_id for batch in batches.values() for event in batch]
    assert list(result.event_ids) == ids
    assert list(result.positions) == sorted(set(result.positions))
    assert not model.positions or result.positions[0] > model.positions[-1]
    for stream_id, batch in batches.items():
        model.streams.setdefault(stream_id, []).extend(event.event_id for event in batch)
    assert result.stream_versions == {s: model.version(s) for s in batches}
    model.log.extend(ids)
    model.positions.extend(result.positions)
    if op.key is not None:
        model.keys[op.key] = result


async def assert_matches(store: EventStore, model: Model) -> None:
    log = await read_log(store)
    assert [event.event_id for event in log] == model.log
    assert [event.position for event in log] == model.positions
    assert await store.last_position() == (model.positions[-1] if model.positions else 0)
    heads = await all_heads(store)
    assert [(h.stream_id, h.version) for h in heads] == [
        (name, len(ids)) for name, ids in sorted(model.streams.items())
    ]
    for name in NAMES:
        stream = await store.read_stream(StreamId(name))
        assert [event.event_id for event in stream] == model.streams.get(name, [])
        assert [event.version for event in stream] == list(range(1, len(stream) + 1))
        assert await store.stream_version(StreamId(name)) == len(stream)


class ModelContract:
    """Part of :class:`StoreContract`, property-based: random appends, conflicts
    and idempotent retries keep every backend in step with a model that is just a list
    per stream and one global list."""

    # Outermost, so pytest-asyncio in strict mode sees it through hypothesis's wrapper.
    @pytest.mark.asyncio
    @settings(
        max_examples=25,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    @given(ops=st.lists(appends(), min_size=1, max_size=12))
    async def test_random_appends_keep_the_store_consistent_with_a_model(
        self, make_store: MakeStore, ops: list[Append]
    ) -> None:
        store = await make_store()  # a fresh store for every example
        model = Model()
        try:
            for op in ops:
                await apply(store, model, op)
            await assert_matches(store, model)
        finally:
            await store.aclose()
