"""The PostgreSQL group-commit write path: many appends, one transaction, one round trip.

``append_batch`` (migration 3, ``migrations/0003_append_batch.sql``) takes every append the
writer collected (``_batch``) as flat arrays — one entry per stream, key, expected version
or event, each tagged with the number of its append — and runs them in one statement, so one
transaction and one WAL flush serve them all. Each append keeps its own outcome:

* it goes in whole, or it is refused (conflict, stored event id) having written nothing,
  or it is deduplicated by its idempotency key; the others carry on either way;
* appends are decided in batch order, and later ones see what earlier ones of the same
  batch wrote: the new stream versions, the keys used, the event ids taken.

Decide first, then write. Every outcome is decided (against the stored state read under
the locks, updated in memory as appends succeed) before the transaction has an xid.
Then, in ONE position-mutex section, the transaction takes its xid and the positions of
all the events that go in. That is exactly the shape the ordering proof in
``migrations/0002_append_events.sql`` needs — the proof is about transactions, not appends: for two
transactions, ``xid_A < xid_B ⇔ every position of A < every position of B`` — so a
reader returning rows below its snapshot's xmin, in position order, still never passes a
position that commits later. Positions are contiguous within a batch (nobody draws while
we hold the mutex); refused appends draw none.

Locks, all transaction-scoped and held to commit, taken in ONE ascending order of key over
the whole batch: one per stream named (written or only read), one per idempotency key.
Every writer — batches from other processes, and the single-append ``append_events`` of
migration 2 — takes its locks in ascending key order, so no wait cycle can form between
them. Under these locks the checks are authoritative: nobody moves the streams, and a
concurrent first use of a key has committed before we look.

What is left for the constraints to catch is a race with a writer that takes none of
our locks: another process storing the same event id, or an older client's
``append_events`` using the same key (it does not take key locks). Either makes the
statement fail (a unique violation, or our own ``EC002``), which rolls back the whole
transaction — nothing of the batch is written — so the store runs the batch once more,
and the checks then see the winner's rows.
"""

from __future__ import annotations

from typing import Any, Final
from uuid import UUID

import msgspec

from eventcore.errors import ConcurrencyConflict, DuplicateEventId
from eventcore.store.protocol import AppendResult
from eventcore.store.request import AppendRequest
from eventcore.types import EMPTY_METADATA

__all__ = [
    "BATCH_STATEMENT",
    "KEY_RACE",
    "batch_params",
    "batch_results",
]

#: Our SQLSTATE for "an idempotency key was taken by a writer outside our locks".
KEY_RACE: Final = "EC002"

#: The statement the writer runs for every batch (after ``render``). Binary parameters:
#: arrays of bytea, uuid and integers go as they are, not as escaped text.
BATCH_STATEMENT: Final = (
    "SELECT * FROM __schema__.append_batch("
    "%b::text[], %b::text[], %b::integer[], %b::integer[], %b::integer[], %b::bigint[],"
    " %b::integer[], %b::integer[], %b::integer[], %b::bigint[], %b::integer[], %b::uuid[],"
    " %b::text[], %b::integer[], %b::bytea[], %b::jsonb[], %b::boolean)"
)

_encode = msgspec.json.Encoder().encode


def batch_params(requests: list[AppendRequest], *, notify: bool = True) -> tuple[Any, ...]:
    """The arguments of ``BATCH_STATEMENT`` for validated requests, in batch order.

    Streams, keys and event ids are numbered here, with dicts, so that the server works
    with integer indexes only.
    """
    streams: dict[str, int] = {}
    keys: dict[str, int] = {}
    groups: dict[UUID, int] = {}
    append_key: list[int] = []
    expected_first: list[int] = []
    expected_stream: list[int] = []
    expected_version: list[int] = []
    event_first: list[int] = []
    event_append: list[int] = []
    event_stream: list[int] = []
    event_version: list[int] = []
    event_group: list[int] = []
    event_ids: list[UUID] = []
    types: list[str] = []
    schema_versions: list[int] = []
    data: list[bytes] = []
    metadata: list[str] = []
    for number, request in enumerate(requests, start=1):
        key = request.idempotency_key
        append_key.append(0 if key is None else keys.setdefault(key, len(keys) + 1))
        expected_first.append(len(expected_stream) + 1)
        event_first.append(len(event_ids) + 1)
        base_of: dict[str, int] = {}
        for stream_id, version in request.expected:
            expected_stream.append(streams.setdefault(stream_id, len(streams) + 1))
            expected_version.append(version)
            base_of[stream_id] = version
        for stream_id, events in request.writes:
            stream = streams[stream_id]
            version = base_of[stream_id]
            for event in events:
                version += 1
                event_id = event.event_id
                event_append.append(number)
                event_stream.append(stream)
                event_version.append(version)
                event_group.append(groups.setdefault(event_id, len(event_ids) + 1))
                event_ids.append(event_id)
                types.append(event.type)
                schema_versions.append(event.schema_version)
                data.append(event.data)
                meta = event.metadata
                metadata.append("{}" if meta == EMPTY_METADATA else _encode(meta).decode())
    expected_first.append(len(expected_stream) + 1)
    event_first.append(len(event_ids) + 1)
    return (
        list(streams),
        list(keys),
        append_key,
        expected_first,
        expected_stream,
        expected_version,
        event_first,
        event_append,
        event_stream,
        event_version,
        event_group,
        event_ids,
        types,
        schema_versions,
        data,
        metadata,
        notify,
    )


#: One append's outcome: its result, or the error to raise in its caller.
Outcome = AppendResult | Exception


def batch_results(requests: list[AppendRequest], rows: list[Any]) -> list[Outcome]:
    """One outcome per request, from the function's rows.

    Only appends that did not simply go in have a row of their own; the positions of
    the others follow from the batch's first position and the event counts, in order.
    """
    special: dict[int, Any] = {}
    position = 0
    for row in rows:
        if row[0] == 0:
            position = int(row[2])
        else:
            special[row[0]] = row
    outcomes: list[Outcome] = []
    for number, request in enumerate(requests, start=1):
        row = special.get(number)
        if row is None:
            count = request.event_count
            base_of = dict(request.expected)
            outcomes.append(
                AppendResult(
                    stream_versions={
                        stream: base_of[stream] + len(events) for stream, events in request.writes
                    },
                    positions=tuple(range(position, position + count)),
                    event_ids=tuple(e.event_id for _, events in request.writes for e in events),
                )
            )
            position += count
        else:
            outcomes.append(_special_outcome(row, outcomes))
    return outcomes


def _special_outcome(row: Any, earlier: list[Outcome]) -> Outcome:
    outcome = row[1]
    if outcome == "deduplicated":
        if row[7] is not None:
            first = earlier[row[7] - 1]
            if not isinstance(first, AppendResult):
                raise RuntimeError("append_batch deduplicated against a refused append")
            return msgspec.structs.replace(first, deduplicated=True)
        return AppendResult(
            stream_versions=dict(zip(row[8], (int(v) for v in row[9]), strict=True)),
            positions=tuple(int(p) for p in row[10]),
            event_ids=tuple(row[11]),
            deduplicated=True,
        )
    if outcome == "conflict":
        return ConcurrencyConflict(row[3], int(row[4]), int(row[5]))
    if outcome == "duplicate":
        return DuplicateEventId(row[6], already_stored=True)
    raise RuntimeError(f"append_batch returned an unknown outcome {outcome!r}")
