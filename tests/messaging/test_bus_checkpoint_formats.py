"""How the SQLite and NATS buses keep a relay's checkpoint beside the store it counts,
and read the checkpoints that earlier versions saved without one."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import nats
import pytest

from eventcore.errors import BusUnavailable
from eventcore.messaging.nats import NatsBus
from eventcore.messaging.sqlite import SqliteBus
from eventcore.messaging.sqlite import _schema as _sqlite_bus_schema
from eventcore.messaging.url import BusUrl
from eventcore.store.checkpoint import Checkpoint
from tests.messaging.buses import NATS_URL
from tests.messaging.helpers import TOPIC, consume, ids, outgoing
from tests.schema_history import as_of_version

STORE = "5b8e0c1a-2d3f-4e5a-8b6c-7d8e9f0a1b2c"


async def _open(path: Path) -> SqliteBus:
    return await SqliteBus.open(BusUrl.parse(f"sqlite://{path.as_posix()}"), lease_ttl=1.0)


async def test_a_sqlite_bus_file_of_schema_version_1_keeps_everything_and_its_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "bus.db"
    with monkeypatch.context() as previous:
        # The bus as it was before checkpoints kept their store.
        as_of_version(previous, _sqlite_bus_schema, 1)
        bus = await _open(path)
        try:
            await bus.publish(outgoing(5, keys=1))
            consumer = await bus.consumer(TOPIC, "billing")
            assert ids(await consume(consumer, 3, batch=3)) == ["m0", "m1", "m2"]
            await consumer.aclose()
        finally:
            await bus.aclose()
    with closing(sqlite3.connect(path)) as connection, connection:
        # What that version's save_checkpoint wrote.
        connection.execute("INSERT INTO bus_checkpoints (name, position) VALUES ('accounts', 42)")
        assert connection.execute("PRAGMA user_version").fetchone()[0] == 1

    bus = await _open(path)
    try:
        assert await bus.load_checkpoint("accounts") == Checkpoint(position=42)
        consumer = await bus.consumer(TOPIC, "billing")
        assert ids(await consume(consumer, 2)) == ["m3", "m4"]  # its offsets were kept
        await consumer.aclose()
        await bus.save_checkpoint("accounts", Checkpoint(position=43, store_id=STORE))
        assert await bus.load_checkpoint("accounts") == Checkpoint(position=43, store_id=STORE)
    finally:
        await bus.aclose()
    with closing(sqlite3.connect(path)) as connection:
        assert (
            connection.execute("PRAGMA user_version").fetchone()[0]
            == _sqlite_bus_schema.LATEST_VERSION
        )


async def _put_raw(namespace: str, key: str, value: bytes) -> None:
    """Write a checkpoint bucket's key directly, as an earlier version would have."""
    client = await nats.connect(NATS_URL)
    try:
        kv = await client.jetstream().key_value(f"{namespace}_checkpoints")
        await kv.put(key, value)
    finally:
        await client.close()


async def test_a_nats_checkpoint_saved_as_a_bare_position_reads_as_one_without_a_store(
    namespace: str,
) -> None:
    bus = await NatsBus.connect(BusUrl.parse(f"{NATS_URL}?namespace={namespace}"))
    try:
        await _put_raw(namespace, "accounts", b"42")
        assert await bus.load_checkpoint("accounts") == Checkpoint(position=42)
        await bus.save_checkpoint("accounts", Checkpoint(position=43, store_id=STORE))
        assert await bus.load_checkpoint("accounts") == Checkpoint(position=43, store_id=STORE)
    finally:
        await bus.aclose()


async def test_an_unreadable_nats_checkpoint_is_a_clear_bus_error(namespace: str) -> None:
    bus = await NatsBus.connect(BusUrl.parse(f"{NATS_URL}?namespace={namespace}"))
    try:
        await _put_raw(namespace, "accounts", b'{"position": -3}')
        with pytest.raises(BusUnavailable, match="unreadable"):
            await bus.load_checkpoint("accounts")
    finally:
        await bus.aclose()
