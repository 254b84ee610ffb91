"""What the CLI tests inspect: dead letters with known contents, and a projected store.

Shared by the tests of ``dlq``, ``projections``, ``--json`` and the fuzz; their fixtures
(``bus_url``, ``urls``) are in ``conftest.py``.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

from eventcore import open_store
from eventcore.messaging import DeadLetter, open_bus
from eventcore.messaging.envelope import encode_envelope, envelope_of
from eventcore.projection import ProjectionRunner, Source, SqliteTarget
from eventcore.types import Metadata, StoredEvent, StreamId, new_event_id
from tests.projection.orders import OrderSummary, append_all, random_events, registry

FAILED_AT = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)


def envelope_body(stream: str, event_type: str, data: bytes) -> bytes:
    stored = StoredEvent(
        position=1,
        stream_id=StreamId(stream),
        version=1,
        event_id=new_event_id(),
        type=event_type,
        schema_version=1,
        data=data,
        metadata=Metadata(correlation_id="corr-7"),
        recorded_at=FAILED_AT,
    )
    return encode_envelope(envelope_of(stored, source="bank"))


def letter(group: str, topic: str, message_id: str, body: bytes, minutes: int) -> DeadLetter:
    return DeadLetter(
        letter_id=DeadLetter.id_for(group, topic, message_id),
        group=group,
        topic=topic,
        message_id=message_id,
        key="account-alice",
        body=body,
        reason="RuntimeError: " + "the ledger is on fire " * 10,
        error_type="RuntimeError",
        attempts=5,
        failed_at=FAILED_AT + timedelta(minutes=minutes),
    )


LETTERS = [
    letter("ledger", "deposits", "m-1", envelope_body("account-alice", "Deposited", b'{"a":1}'), 1),
    letter("ledger", "deposits", "m-2", b"{not json", 2),
    letter("ledger", "withdrawals", "m-3", b'{"hello":"world"}', 3),
    letter("audit", "deposits", "m-4", b"\x00\xffbinary", 4),
]


async def fill_letters(url: str) -> None:
    bus = await open_bus(url)
    try:
        for each in LETTERS:
            await bus.dead_letters.put(each)
    finally:
        await bus.aclose()


async def project(store_url: str, target_path: Path) -> None:
    async with await open_store(store_url) as store:
        await append_all(store, random_events(random.Random(1), 300))
        async with await SqliteTarget.open(target_path) as target:
            await ProjectionRunner(
                OrderSummary(), target, Source("main", store, registry)
            ).catch_up()
            await append_all(store, random_events(random.Random(2), 10))
