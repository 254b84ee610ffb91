"""One run of the bank demo against a store: open accounts, race transfers, audit.

The transfers are planned up front from a seed (who pays whom, how much); how they
interleave is up to the event loop and the store, which is the point: whatever the
interleaving, the audit of the stored history must hold.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

from eventcore.demo.bank import (
    Audit,
    Check,
    InsufficientFunds,
    OpenAccount,
    Transfer,
    registry,
)
from eventcore.errors import CommandFailed, CommandRejected, EventcoreError, InvalidInput
from eventcore.executor import Executor
from eventcore.retry import RetryPolicy
from eventcore.store.protocol import EventStore
from eventcore.types import Metadata, StreamId

__all__ = ["BankRun", "Tally", "run_bank"]

T = TypeVar("T")

INITIAL_BALANCE = 1_000
#: Transfers of up to a quarter of an opening balance drain some accounts within a few
#: dozen payments, so overdraft rejections happen in every run of a useful size.
MAX_AMOUNT = INITIAL_BALANCE // 4
#: Many writers share few accounts, so conflicts are the normal case, not the exception.
RETRY = RetryPolicy(max_attempts=50, initial_delay=0.001, max_delay=0.05)
#: An upper bound on the executor's state cache, for runs with very many accounts.
_MAX_CACHED_STATES = 10_000
#: How many failures a tally keeps the message of; the rest are only counted.
_KEPT_FAILURES = 5


@dataclass
class Tally:
    """What the transfers have done so far."""

    planned: int
    completed: int = 0
    rejected: int = 0
    overdrafts: int = 0
    failed: int = 0
    #: Conflicts the executor retried, over the transfers that completed (a rejection
    #: does not say how many attempts it took).
    retries: int = 0
    failures: list[str] = field(default_factory=list)

    @property
    def decided(self) -> int:
        return self.completed + self.rejected + self.failed


@dataclass(frozen=True)
class BankRun:
    """The outcome of one run: what was done, how fast, and the audit's verdict."""

    prefix: str
    accounts: tuple[StreamId, ...]
    seed: int
    tally: Tally
    seconds: float
    events: int
    total: int
    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)


@dataclass(frozen=True)
class _Payment:
    source: int
    target: int
    amount: int


def plan(accounts: int, transfers: int, rng: random.Random) -> list[_Payment]:
    """``transfers`` payments between distinct accounts, drawn from ``rng``."""
    payments = []
    for _ in range(transfers):
        source, target = rng.sample(range(accounts), 2)
        payments.append(_Payment(source, target, rng.randint(1, MAX_AMOUNT)))
    return payments


async def run_bank(
    store: EventStore,
    *,
    accounts: int,
    transfers: int,
    concurrency: int,
    seed: int,
    on_progress: Callable[[Tally], None] | None = None,
) -> BankRun:
    """Run the bank on ``store`` and audit what it wrote.

    Streams are named ``bank-<run id>/account-<n>``, so runs never meet, even on a store
    that already holds other data; the audit reads only this run's streams.
    """
    if accounts < 2:
        raise InvalidInput(f"a transfer needs two accounts; got {accounts}")
    prefix = f"bank-{secrets.token_hex(3)}"
    width = len(str(accounts))
    names = tuple(StreamId(f"{prefix}/account-{n:0{width}d}") for n in range(1, accounts + 1))
    # Folded balances are immutable values (see ``bank``), so the executor may keep them
    # between attempts and runs: a retry then reads only the events it has not seen,
    # instead of both accounts from version 1. One entry per ordered pair of accounts.
    executor = Executor(
        store,
        registry,
        retry=RETRY,
        rng=random.Random(seed),
        cache_size=min(accounts * (accounts - 1), _MAX_CACHED_STATES),
    )
    metadata = Metadata(actor="eventcore-demo")

    async def open_account(name: StreamId) -> None:
        await executor.execute(
            OpenAccount(account=name, initial_balance=INITIAL_BALANCE), metadata=metadata
        )

    await _drain(names, concurrency, open_account)

    tally = Tally(planned=transfers)

    async def pay(number_and_payment: tuple[int, _Payment]) -> None:
        number, payment = number_and_payment
        transfer_id = f"{prefix}/transfer-{number}"
        command = Transfer(
            source=names[payment.source],
            target=names[payment.target],
            amount=payment.amount,
            transfer_id=transfer_id,
        )
        try:
            result = await executor.execute(
                command,
                # The transfer id ties both legs together in every event's metadata,
                # and makes a repeated submission of the same transfer harmless.
                metadata=Metadata(actor="eventcore-demo", correlation_id=transfer_id),
                idempotency_key=transfer_id,
            )
        except CommandRejected as rejection:
            tally.rejected += 1
            tally.overdrafts += isinstance(rejection, InsufficientFunds)
        except CommandFailed as failure:
            tally.failed += 1
            if len(tally.failures) < _KEPT_FAILURES:
                tally.failures.append(str(failure))
        else:
            tally.completed += 1
            tally.retries += result.attempts - 1
        if on_progress is not None:
            on_progress(tally)

    payments = plan(accounts, transfers, random.Random(seed))
    started = time.perf_counter()
    await _drain(enumerate(payments, start=1), concurrency, pay)
    seconds = time.perf_counter() - started

    checks, events = await _audit(store, names, tally)
    return BankRun(
        prefix=prefix,
        accounts=names,
        seed=seed,
        tally=tally,
        seconds=seconds,
        events=events,
        total=accounts * INITIAL_BALANCE,
        checks=tuple(checks),
    )


async def _audit(
    store: EventStore, names: tuple[StreamId, ...], tally: Tally
) -> tuple[list[Check], int]:
    """Read this run's history back from the store and check it."""
    ours = frozenset(names)
    audit = Audit(expected_total=len(names) * INITIAL_BALANCE)
    async for batch in store.read_all():
        for stored in batch:
            if stored.stream_id in ours:
                audit.observe(stored)
    checks = audit.report()

    # What the executor reported must match what the log holds, and each stream read on
    # its own must agree with the global log about how long it is.
    reported = Check("every completed transfer is in the log")
    if audit.transfers != tally.completed:
        reported = Check(
            reported.name,
            (f"{tally.completed} transfers completed, {audit.transfers} found in the log",),
            1,
        )
    heads = []
    versions = audit.versions
    for name in names:
        version = await store.stream_version(name)
        if version != versions.get(name, 0):
            heads.append(f"{name}: stream at version {version}, log has {versions.get(name, 0)}")
    checks.append(reported)
    checks.append(Check("stream heads agree with the global log", tuple(heads[:5]), len(heads)))
    return checks, audit.events


async def _drain(
    items: Iterable[T], concurrency: int, work: Callable[[T], Awaitable[None]]
) -> None:
    """Run ``work`` on every item from ``concurrency`` coroutines at once."""
    shared: Iterator[T] = iter(items)

    async def worker() -> None:
        # Workers share one iterator: next() never yields to the loop, so each item
        # goes to exactly one worker and no queue is needed.
        for item in shared:
            await work(item)

    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(max(concurrency, 1)):
                group.create_task(worker())
    except ExceptionGroup as errors:
        # A store failure in one worker stops them all; surface it as the typed error
        # it is, so callers handle it like any other, rather than as a group.
        first = errors.exceptions[0]
        if all(isinstance(error, EventcoreError) for error in errors.exceptions):
            raise first from errors
        raise
