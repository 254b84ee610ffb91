"""The eventcore side: an account domain, its commands and one coroutine per workload.

Each workload opens a fresh store at the context's URL, sets up what it needs untimed, and
returns its figure (commands/s or events/s) for the timed part only.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from bench.common import Context, Stopwatch, split
from eventcore import (
    Command,
    CommandRejected,
    Event,
    EventRegistry,
    EventStore,
    Executor,
    RetryPolicy,
    StreamId,
    Writes,
    open_store,
)
from eventcore.types import StoredEvent

__all__ = ["WORKLOADS", "opened", "populate_log", "registry", "run"]

registry = EventRegistry()


@registry.register
class Opened(Event):
    owner: str
    balance: int


@registry.register
class Deposited(Event):
    amount: int


@registry.register
class TransferredOut(Event):
    amount: int
    target: str


@registry.register
class TransferredIn(Event):
    amount: int
    source: str


def balance_after(balance: int, event: Event) -> int:
    if isinstance(event, Deposited | TransferredIn):
        return balance + event.amount
    if isinstance(event, TransferredOut):
        return balance - event.amount
    if isinstance(event, Opened):
        return event.balance
    return balance


class OpenAccount(Command[bool]):
    """Opens a new account stream with one ``Opened``.

    Like ``eventsourcing``'s save of a new aggregate, it does not read first: it
    decides on the empty stream and the append's version check (expected 0) proves it.
    """

    creates_streams = True

    account: StreamId
    owner: str
    balance: int = 0

    def initial_state(self) -> bool:
        return False

    def apply(self, state: bool, stream_id: StreamId, event: Event) -> bool:
        return True

    def handle(self, state: bool) -> Writes:
        if state:
            raise CommandRejected(f"{self.account} is already open")
        return {self.account: [Opened(owner=self.owner, balance=self.balance)]}


class Deposit(Command[int]):
    account: StreamId
    amount: int

    def initial_state(self) -> int:
        return 0

    def apply(self, state: int, stream_id: StreamId, event: Event) -> int:
        return balance_after(state, event)

    def handle(self, state: int) -> Writes:
        return {self.account: [Deposited(amount=self.amount)]}


class Transfer(Command[tuple[int, int]]):
    """Reads both accounts, checks the balance, writes one event to each."""

    source: StreamId
    target: StreamId
    amount: int

    def initial_state(self) -> tuple[int, int]:
        return (0, 0)

    def apply(self, state: tuple[int, int], stream_id: StreamId, event: Event) -> tuple[int, int]:
        if stream_id == self.source:
            return (balance_after(state[0], event), state[1])
        return (state[0], balance_after(state[1], event))

    def handle(self, state: tuple[int, int]) -> Writes:
        if state[0] < self.amount:
            raise CommandRejected(f"{self.source} holds {state[0]}, less than {self.amount}")
        return {
            self.source: [TransferredOut(amount=self.amount, target=str(self.target))],
            self.target: [TransferredIn(amount=self.amount, source=str(self.source))],
        }


def account(index: int) -> StreamId:
    return StreamId(f"account-{index}")


@asynccontextmanager
async def opened(url: str) -> AsyncIterator[EventStore]:
    store = await open_store(url)
    try:
        yield store
    finally:
        await store.aclose()


async def append_many(store: EventStore, stream: StreamId, events: list[Event], batch: int) -> None:
    """Write ``events`` to a new stream in appends of ``batch`` events (set-up only)."""
    version = 0
    for start in range(0, len(events), batch):
        chunk = [registry.encode(event) for event in events[start : start + batch]]
        await store.append({stream: chunk}, expected={stream: version})
        version += len(chunk)


def account_history(count: int) -> list[Event]:
    """An account opened, then ``count - 1`` deposits."""
    return [Opened(owner="bench", balance=0), *(Deposited(amount=1) for _ in range(count - 1))]


async def populate_log(store: EventStore, events: int, per_stream: int) -> None:
    """A global log of ``events`` events spread over streams of ``per_stream`` events."""
    streams, rest = divmod(events, per_stream)
    sizes = [per_stream] * streams + ([rest] if rest else [])
    for index, size in enumerate(sizes):
        await append_many(store, StreamId(f"log-{index}"), account_history(size), per_stream)


# --- the workloads -----------------------------------------------------------------------


async def a_new_streams_sequential(ctx: Context) -> float:
    count = ctx.sizes.new_streams
    commands = [OpenAccount(account=account(index), owner="bench") for index in range(count)]
    async with opened(ctx.backend.eventcore_url(ctx.workdir)) as store:
        executor = Executor(store, registry)
        clock = Stopwatch()
        with clock.running():
            for command in commands:
                await executor.execute(command)
        return clock.rate(count)


async def b_new_streams_concurrent(ctx: Context) -> float:
    count = ctx.sizes.concurrent_streams
    commands = [OpenAccount(account=account(index), owner="bench") for index in range(count)]
    quotas = split(count, ctx.sizes.concurrency)
    async with opened(ctx.backend.eventcore_url(ctx.workdir)) as store:
        executor = Executor(store, registry)

        async def worker(mine: list[OpenAccount]) -> None:
            for command in mine:
                await executor.execute(command)

        shares, start = [], 0
        for quota in quotas:
            shares.append(commands[start : start + quota])
            start += quota
        clock = Stopwatch()
        with clock.running():
            async with asyncio.TaskGroup() as group:
                for share in shares:
                    group.create_task(worker(share))
        return clock.rate(count)


async def c_append_one_stream(ctx: Context) -> float:
    count = ctx.sizes.appends
    stream = account(0)
    commands = [Deposit(account=stream, amount=1) for _ in range(count)]
    async with opened(ctx.backend.eventcore_url(ctx.workdir)) as store:
        executor = Executor(store, registry, cache_size=1_000)
        await executor.execute(OpenAccount(account=stream, owner="bench"))
        clock = Stopwatch()
        with clock.running():
            for command in commands:
                await executor.execute(command)
        final = await store.stream_version(stream)
        if final != count + 1:
            raise RuntimeError(f"expected {count + 1} events in {stream}, found {final}")
        return clock.rate(count)


async def d_transfers_concurrent(ctx: Context) -> float:
    sizes = ctx.sizes
    rng = random.Random(7)
    transfers = []
    for _ in range(sizes.transfers):
        source, target = rng.sample(range(sizes.accounts), 2)
        transfers.append(
            Transfer(source=account(source), target=account(target), amount=rng.randint(1, 100))
        )
    attempts = 0
    async with opened(ctx.backend.eventcore_url(ctx.workdir)) as store:
        # eventsourcing's side retries until it succeeds; the default 10 attempts can run
        # out when 16 writers share few accounts, so allow as many here.
        executor = Executor(store, registry, retry=RetryPolicy(max_attempts=1_000))
        for index in range(sizes.accounts):
            await executor.execute(
                OpenAccount(account=account(index), owner="bench", balance=1_000_000_000)
            )

        async def worker(mine: list[Transfer]) -> None:
            nonlocal attempts
            for command in mine:
                result = await executor.execute(command)
                attempts += result.attempts

        workers = sizes.transfer_workers
        shares = [transfers[index::workers] for index in range(workers)]
        clock = Stopwatch()
        with clock.running():
            async with asyncio.TaskGroup() as group:
                for share in shares:
                    group.create_task(worker(share))
        ctx.facts["retries"] = str(attempts - sizes.transfers)
        return clock.rate(sizes.transfers)


def fold_balance(events: list[StoredEvent]) -> int:
    decode = registry.decode
    balance = 0
    for stored in events:
        balance = balance_after(balance, decode(stored))
    return balance


async def e_read_fold_stream(ctx: Context) -> float:
    count = ctx.sizes.stream_events
    stream = account(0)
    async with opened(ctx.backend.eventcore_url(ctx.workdir)) as store:
        await append_many(store, stream, account_history(count), ctx.sizes.populate_batch)
        clock = Stopwatch()
        with clock.running():
            balance = fold_balance(await store.read_stream(stream))
        if balance != count - 1:
            raise RuntimeError(f"folded balance {balance}, expected {count - 1}")
        return clock.rate(count)


async def f_read_global_log(ctx: Context) -> float:
    count = ctx.sizes.log_events
    async with opened(ctx.backend.eventcore_url(ctx.workdir)) as store:
        await populate_log(store, count, ctx.sizes.populate_batch)
        decode = registry.decode
        seen = 0
        clock = Stopwatch()
        with clock.running():
            async for batch in store.read_all(batch_size=1_000):
                for stored in batch:
                    decode(stored)
                seen += len(batch)
        if seen != count:
            raise RuntimeError(f"read {seen} events from the log, expected {count}")
        return clock.rate(count)


Workload = Callable[[Context], Awaitable[float]]

WORKLOADS: dict[str, Workload] = {
    "a_new_streams_sequential": a_new_streams_sequential,
    "b_new_streams_concurrent": b_new_streams_concurrent,
    "c_append_one_stream": c_append_one_stream,
    "d_transfers_concurrent": d_transfers_concurrent,
    "e_read_fold_stream": e_read_fold_stream,
    "f_read_global_log": f_read_global_log,
}


def run(name: str, ctx: Context) -> Any:
    return asyncio.run(WORKLOADS[name](ctx))
