"""The ``eventsourcing`` side: the same account domain as an Aggregate, one function per workload.

The library is synchronous, so the concurrent workloads use threads. Every workload builds a
fresh ``Application`` on the context's environment and times only the workload itself.
"""

from __future__ import annotations

import random
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event
from eventsourcing.persistence import IntegrityError, StoredEvent

from bench.common import Context, Stopwatch, split

__all__ = ["WORKLOADS", "Account", "Bank", "opened", "populate_replay", "replay", "run"]


class Account(Aggregate):
    @event("Opened")
    def __init__(self, owner: str, balance: int = 0) -> None:
        self.owner = owner
        self.balance = balance

    @event("Deposited")
    def deposit(self, amount: int) -> None:
        self.balance += amount

    @event("TransferredOut")
    def transfer_out(self, amount: int, target: str) -> None:
        self.balance -= amount

    @event("TransferredIn")
    def transfer_in(self, amount: int, source: str) -> None:
        self.balance += amount


class Bank(Application):
    pass


class Rejected(Exception):
    pass


def check_sqlite_durability(app: Application) -> None:
    """Fail unless the app's SQLite connection is in WAL mode with synchronous=FULL."""
    datastore = getattr(app.recorder, "datastore", None)
    if datastore is None or not hasattr(datastore, "pool"):
        return
    if type(datastore).__module__ != "eventsourcing.sqlite":
        return
    with datastore.transaction(commit=False) as cursor:
        cursor.execute("PRAGMA journal_mode")
        journal = str(cursor.fetchone()[0]).lower()
        cursor.execute("PRAGMA synchronous")
        synchronous = int(cursor.fetchone()[0])
    if journal != "wal" or synchronous != 2:
        raise RuntimeError(
            f"eventsourcing's SQLite runs journal_mode={journal}, synchronous={synchronous}; "
            "the benchmark compares WAL with synchronous=FULL (2)"
        )


@contextmanager
def opened(env: dict[str, str]) -> Iterator[Bank]:
    app = Bank(env=env)
    try:
        check_sqlite_durability(app)
        yield app
    finally:
        app.close()


def run_threads(target: Callable[[int], None], count: int) -> Stopwatch:
    """Start ``count`` threads, release them together and time until the last one ends."""
    start = threading.Barrier(count + 1)
    errors: list[BaseException] = []

    def body(index: int) -> None:
        start.wait()
        try:
            target(index)
        except BaseException as error:
            errors.append(error)
            raise

    threads = [threading.Thread(target=body, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    clock = Stopwatch()
    with clock.running():
        start.wait()
        for thread in threads:
            thread.join()
    if errors:
        raise RuntimeError(f"{len(errors)} worker thread(s) failed") from errors[0]
    return clock


# --- the workloads -----------------------------------------------------------------------


def a_new_streams_sequential(ctx: Context) -> float:
    count = ctx.sizes.new_streams
    with opened(ctx.backend.eventsourcing_env(ctx.workdir)) as app:
        clock = Stopwatch()
        with clock.running():
            for _ in range(count):
                app.save(Account(owner="bench"))
        return clock.rate(count)


def b_new_streams_concurrent(ctx: Context) -> float:
    count = ctx.sizes.concurrent_streams
    quotas = split(count, ctx.sizes.concurrency)
    with opened(ctx.backend.eventsourcing_env(ctx.workdir)) as app:

        def worker(index: int) -> None:
            for _ in range(quotas[index]):
                app.save(Account(owner="bench"))

        return run_threads(worker, len(quotas)).rate(count)


def c_append_one_stream(ctx: Context) -> float:
    count = ctx.sizes.appends
    env = {
        **ctx.backend.eventsourcing_env(ctx.workdir),
        # The aggregate cache, fast-forwarded: a get reads only the events after the cached
        # version (the equivalent of eventcore's Executor(cache_size > 0)).
        "AGGREGATE_CACHE_MAXSIZE": "1000",
        "AGGREGATE_CACHE_FASTFORWARD": "y",
    }
    with opened(env) as app:
        created = Account(owner="bench")
        app.save(created)
        account_id = created.id
        clock = Stopwatch()
        with clock.running():
            for _ in range(count):
                account = app.repository.get(account_id)
                account.deposit(1)
                app.save(account)
        final = app.repository.get(account_id)
        if final.version != count + 1:
            raise RuntimeError(f"expected version {count + 1}, found {final.version}")
        return clock.rate(count)


def d_transfers_concurrent(ctx: Context) -> float:
    sizes = ctx.sizes
    rng = random.Random(7)
    plan = []
    for _ in range(sizes.transfers):
        source, target = rng.sample(range(sizes.accounts), 2)
        plan.append((source, target, rng.randint(1, 100)))
    retries = 0
    retries_lock = threading.Lock()
    with opened(ctx.backend.eventsourcing_env(ctx.workdir)) as app:
        accounts = [Account(owner="bench", balance=1_000_000_000) for _ in range(sizes.accounts)]
        for created in accounts:
            app.save(created)
        ids = [created.id for created in accounts]

        def transfer(source_id: uuid.UUID, target_id: uuid.UUID, amount: int) -> int:
            conflicts = 0
            while True:
                source = app.repository.get(source_id)
                target = app.repository.get(target_id)
                if source.balance < amount:
                    raise Rejected(f"{source_id} holds {source.balance}, less than {amount}")
                source.transfer_out(amount, str(target_id))
                target.transfer_in(amount, str(source_id))
                try:
                    app.save(source, target)
                except IntegrityError:
                    conflicts += 1
                    continue
                return conflicts

        def worker(index: int) -> None:
            nonlocal retries
            mine = 0
            for source, target, amount in plan[index :: sizes.transfer_workers]:
                mine += transfer(ids[source], ids[target], amount)
            with retries_lock:
                retries += mine

        clock = run_threads(worker, sizes.transfer_workers)
        ctx.facts["retries"] = str(retries)
        return clock.rate(sizes.transfers)


def e_read_fold_stream(ctx: Context) -> float:
    count = ctx.sizes.stream_events
    with opened(ctx.backend.eventsourcing_env(ctx.workdir)) as app:  # no aggregate cache
        created = Account(owner="bench")
        for _ in range(count - 1):
            created.deposit(1)
        app.save(created)
        clock = Stopwatch()
        with clock.running():
            account = app.repository.get(created.id)
        if account.balance != count - 1:
            raise RuntimeError(f"folded balance {account.balance}, expected {count - 1}")
        return clock.rate(count)


def replay(app: Application, page: int = 1_000, on_page: Callable[[], None] | None = None) -> int:
    """Read the whole notification log in pages, turning each into its domain event."""
    select = app.recorder.select_notifications
    to_domain_event = app.mapper.to_domain_event
    seen, start = 0, 1
    while True:
        notifications = select(start, page)
        if not notifications:
            return seen
        for notification in notifications:
            to_domain_event(notification)
        seen += len(notifications)
        start = notifications[-1].id + 1
        if on_page is not None:
            on_page()


def f_read_global_log(ctx: Context) -> float:
    count = ctx.sizes.log_events
    per_stream = ctx.sizes.populate_batch
    env = ctx.backend.eventsourcing_env(ctx.workdir)
    with opened(env) as app:
        # The same rows app.save would write (its mapper's own output), inserted in bulk:
        # set-up only, and building 100,000 aggregate events first would dominate the run.
        populate_replay(app, count, per_stream, env.get("SQLITE_DBNAME"))
        clock = Stopwatch()
        with clock.running():
            seen = replay(app)
        if seen != count:
            raise RuntimeError(f"read {seen} notifications, expected {count}")
        return clock.rate(count)


def split_streams(events: int, per_stream: int) -> list[int]:
    streams, rest = divmod(events, per_stream)
    return [per_stream] * streams + ([rest] if rest else [])


def _templates(app: Application) -> tuple[StoredEvent, StoredEvent]:
    """A stored ``Opened`` and a stored ``Deposited``, as this app's mapper writes them."""
    sample = Account(owner="bench")
    sample.deposit(1)
    opened_event, deposited = sample.collect_events()
    return app.mapper.to_stored_event(opened_event), app.mapper.to_stored_event(deposited)


def _stored_rows(app: Application, events: int, per_stream: int) -> Iterator[StoredEvent]:
    first, rest = _templates(app)
    for size in split_streams(events, per_stream):
        originator = uuid.uuid4()
        for version in range(1, size + 1):
            template = first if version == 1 else rest
            yield StoredEvent(
                originator_id=originator,
                originator_version=version,
                topic=template.topic,
                state=template.state,
            )


def populate_replay(
    app: Application, events: int, per_stream: int, sqlite_path: str | None
) -> None:
    """Fill the log fast with events the app's mapper can read back (set-up only).

    On SQLite the rows go straight into eventsourcing's table with one ``executemany``;
    otherwise through the recorder in large batches.
    """
    rows = _stored_rows(app, events, per_stream)
    if sqlite_path is not None:
        table = app.recorder.events_table_name  # type: ignore[attr-defined]
        with sqlite3.connect(sqlite_path) as connection:
            connection.executemany(
                f"INSERT INTO {table} VALUES (?,?,?,?)",
                (
                    (row.originator_id.hex, row.originator_version, row.topic, row.state)  # type: ignore[union-attr]
                    for row in rows
                ),
            )
        return
    batch: list[StoredEvent] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= 10_000:
            app.recorder.insert_events(batch)
            batch = []
    if batch:
        app.recorder.insert_events(batch)


WORKLOADS: dict[str, Callable[[Context], float]] = {
    "a_new_streams_sequential": a_new_streams_sequential,
    "b_new_streams_concurrent": b_new_streams_concurrent,
    "c_append_one_stream": c_append_one_stream,
    "d_transfers_concurrent": d_transfers_concurrent,
    "e_read_fold_stream": e_read_fold_stream,
    "f_read_global_log": f_read_global_log,
}


def run(name: str, ctx: Context) -> float:
    return WORKLOADS[name](ctx)
