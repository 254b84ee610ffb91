"""SqlTransaction's grouping of statement runs, and a batch's commit on both SQL targets."""

from __future__ import annotations

import random
import sqlite3
from typing import Any

import pytest

from eventcore import Checkpoint, StoredEvent
from eventcore.projection import Projection, SqlTransaction, VersionRetired, handles
from eventcore.projection._sql_target import SqlTarget
from eventcore.projection.target import Batch
from tests.projection.conftest import table
from tests.projection.orders import OrderPlaced, append_all, registry

_SCHEMA = "CREATE TABLE t (k TEXT PRIMARY KEY, n INTEGER NOT NULL)"
_UPSERT = "INSERT INTO {t} VALUES (?, ?) ON CONFLICT (k) DO UPDATE SET n = {t}.n + excluded.n"
_DOUBLE = "UPDATE {t} SET n = n * 2 WHERE k = ?"
_DELETE = "DELETE FROM {t} WHERE k = ?"


class _Counting:
    """A SQLite connection that counts driver calls."""

    def __init__(self) -> None:
        self.conn = sqlite3.connect(":memory:", isolation_level=None)
        self.conn.execute(_SCHEMA)
        self.calls = 0

    def run(self, sql: str, params: Any = ()) -> Any:
        self.calls += 1
        return self.conn.execute(sql, params)

    def run_many(self, sql: str, params: list[Any]) -> None:
        self.calls += 1
        self.conn.executemany(sql, params)

    def rows(self) -> list[tuple[Any, ...]]:
        return sorted(self.conn.execute("SELECT k, n FROM t").fetchall())


def _workload(tx: SqlTransaction, seed: int) -> list[object]:
    """Runs of writes with reads between them; returns what the reads saw."""
    rng = random.Random(seed)
    seen: list[object] = []
    for _ in range(400):
        key = f"k{rng.randrange(12)}"
        choice = rng.random()
        if choice < 0.6:
            tx.execute(_UPSERT, (key, rng.randrange(1, 5)))
        elif choice < 0.75:
            tx.execute(_DOUBLE, (key,))
        elif choice < 0.85:
            tx.execute(_DELETE, (key,))
        elif choice < 0.95:
            seen.append(tx.fetchone("SELECT n FROM {t} WHERE k = ?", (key,)))
        else:
            seen.append(tx.fetchall("SELECT k, n FROM {t} ORDER BY k"))
    tx.flush()
    return seen


@pytest.mark.parametrize("seed", range(5))
def test_grouped_statements_leave_the_state_one_at_a_time_leaves(seed: int) -> None:
    single, grouped = _Counting(), _Counting()
    seen_single = _workload(SqlTransaction(single.run, {"t": "t"}, 1), seed)
    seen_grouped = _workload(
        SqlTransaction(grouped.run, {"t": "t"}, 1, None, grouped.run_many), seed
    )

    assert grouped.rows() == single.rows()
    assert seen_grouped == seen_single  # every read saw every write issued before it
    assert grouped.calls < single.calls


def test_a_run_of_one_statement_is_one_driver_call_sent_at_flush() -> None:
    db = _Counting()
    tx = SqlTransaction(db.run, {"t": "t"}, 1, None, db.run_many)

    for n in range(100):
        tx.execute(_UPSERT, (f"k{n % 7}", 1))
    assert db.calls == 0  # not sent yet
    assert db.rows() == []
    tx.flush()
    tx.flush()  # nothing left: sends nothing again

    assert db.calls == 1
    assert sum(n for _, n in db.rows()) == 100


def test_an_error_in_a_grouped_run_surfaces_at_flush_and_is_not_sent_twice() -> None:
    db = _Counting()
    tx = SqlTransaction(db.run, {"t": "t"}, 1, None, db.run_many)
    tx.execute("INSERT INTO {t} VALUES (?, ?)", ("a", 1))
    tx.execute("INSERT INTO {t} VALUES (?, ?)", ("a", 2))  # duplicate key

    with pytest.raises(sqlite3.IntegrityError):
        tx.flush()
    tx.flush()

    assert db.calls == 1


class _Upserts(Projection):
    """One upsert per event, and a key that breaks the NOT NULL rule on demand."""

    name = "upserts"
    tables = ("totals",)

    def setup(self, tx: SqlTransaction) -> None:
        tx.execute("CREATE TABLE {totals} (customer TEXT PRIMARY KEY, amount BIGINT NOT NULL)")

    @handles(OrderPlaced)
    def placed(self, tx: SqlTransaction, event: OrderPlaced, stored: StoredEvent) -> None:
        tx.execute(
            "INSERT INTO {totals} VALUES (?, ?) ON CONFLICT (customer) DO UPDATE"
            " SET amount = {totals}.amount + excluded.amount",
            (event.customer, None if event.amount < 0 else event.amount),
        )


async def _batches(store: Any, amounts: list[int], size: int) -> list[list[StoredEvent]]:
    await append_all(
        store,
        [
            OrderPlaced(order_id=f"o{n}", customer=f"c{n % 3}", amount=a)
            for n, a in enumerate(amounts)
        ],
    )
    return [batch async for batch in store.read_all(batch_size=size)]


async def test_a_batch_commits_its_grouped_writes_with_its_checkpoint(
    store: Any, target: SqlTarget
) -> None:
    projection = _Upserts()
    version = await target.live_version(projection)
    handlers = projection.handlers_for("orders")
    for batch in await _batches(store, list(range(1, 31)), 10):
        await target.commit(projection, version, Batch("orders", batch, handlers, registry))

    totals = await table(target, "SELECT customer, amount FROM totals")
    assert totals == [("c0", sum(range(1, 31, 3))), ("c1", sum(range(2, 31, 3))), ("c2", 165)]
    assert await target.checkpoints("upserts", version) == {"orders": Checkpoint(position=30)}


async def test_a_failing_grouped_statement_fails_its_batch_and_writes_nothing(
    store: Any, target: SqlTarget
) -> None:
    projection = _Upserts()
    version = await target.live_version(projection)
    handlers = projection.handlers_for("orders")
    first, second = await _batches(store, [1, 1, 1, 1, -1, 1], 3)
    await target.commit(projection, version, Batch("orders", first, handlers, registry))

    with pytest.raises(Exception, match=r"(?i)null"):
        await target.commit(projection, version, Batch("orders", second, handlers, registry))

    assert await table(target, "SELECT customer, amount FROM totals") == [
        ("c0", 1),
        ("c1", 1),
        ("c2", 1),
    ]
    assert await target.checkpoints("upserts", version) == {"orders": Checkpoint(position=3)}
    # The connection is usable again: the next good batch commits.
    third = await _batches(store, [5], 1)
    await target.commit(projection, version, Batch("orders", third[-1], handlers, registry))
    assert await target.checkpoints("upserts", version) == {"orders": Checkpoint(position=7)}


async def test_a_retired_version_gains_no_writes_from_a_pipelined_commit(
    store: Any, target: SqlTarget
) -> None:
    projection = _Upserts()
    old = await target.live_version(projection)
    new = await target.new_version(projection)
    await target.switch(projection, new, keep_old=True)
    (batch,) = await _batches(store, [4, 4], 10)

    with pytest.raises(VersionRetired):
        await target.commit(
            projection, old, Batch("orders", batch, projection.handlers_for("orders"), registry)
        )

    assert await table(target, f"SELECT * FROM totals_v{old}") == []
    assert await target.checkpoints("upserts", old) == {}


async def test_the_postgres_target_commits_without_waiting_for_the_wal_flush_by_default(
    target: SqlTarget,
) -> None:
    if not hasattr(target, "schema"):
        pytest.skip("a PostgreSQL setting")

    def setting(run: Any) -> str:
        return str(run("SHOW synchronous_commit").fetchone()[0])

    assert await target._call(lambda: target._transaction(setting, None)) == "off"


async def test_the_postgres_target_refuses_an_unknown_synchronous_commit() -> None:
    pytest.importorskip("psycopg")
    from eventcore.errors import InvalidUrl
    from eventcore.projection.postgres import PostgresTarget

    with pytest.raises(InvalidUrl, match="synchronous_commit"):
        await PostgresTarget.open("postgresql://nobody@127.0.0.1:1/x?synchronous_commit=maybe")
