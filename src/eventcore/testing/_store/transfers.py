"""The concurrency contract, end to end: many writers moving money through the executor.

32 tasks make transfers between 5 accounts at once. Each transfer reads both accounts,
refuses an overdraft, and writes one event to each; conflicting transfers are retried
by the executor. Whatever the interleaving, the store must end up with money
conserved, no account ever overdrawn, contiguous versions, unique ids and positions,
and exactly the events of the transfers that succeeded.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections import Counter

import msgspec
import pytest
import pytest_asyncio

from eventcore import (
    Command,
    CommandRejected,
    Event,
    EventRegistry,
    EventStore,
    Executor,
    RetryPolicy,
    StoredEvent,
    StreamId,
    Writes,
)
from eventcore.testing._reading import read_log
from eventcore.testing._store_fixtures import MakeStore

ACCOUNTS = tuple(StreamId(f"account-{n}") for n in range(5))
OPENING_BALANCE = 100
WORKERS = 32
TRANSFERS_PER_WORKER = 2


class Opened(Event):
    balance: int


class Debited(Event):
    amount: int


class Credited(Event):
    amount: int


registry = EventRegistry([Opened, Debited, Credited])


def balance_change(event: Event) -> int:
    if isinstance(event, Opened):
        return event.balance
    if isinstance(event, Credited):
        return event.amount
    assert isinstance(event, Debited)
    return -event.amount


class Overdraft(CommandRejected):
    pass


class Open(Command[bool]):
    account: StreamId
    balance: int

    def initial_state(self) -> bool:
        return False

    def apply(self, state: bool, stream_id: StreamId, event: Event) -> bool:
        return True

    def handle(self, state: bool) -> Writes:
        if state:
            raise CommandRejected(f"{self.account} is already open")
        return {self.account: [Opened(balance=self.balance)]}


class Transfer(Command[tuple[int, int]]):
    """Moves ``amount`` from ``source`` to ``target``; state: (source, target) balances."""

    source: StreamId
    target: StreamId
    amount: int

    def initial_state(self) -> tuple[int, int]:
        return (0, 0)

    def apply(self, state: tuple[int, int], stream_id: StreamId, event: Event) -> tuple[int, int]:
        source, target = state
        if stream_id == self.source:
            return (source + balance_change(event), target)
        return (source, target + balance_change(event))

    def handle(self, state: tuple[int, int]) -> Writes:
        if state[0] < self.amount:
            raise Overdraft(f"{self.source} holds {state[0]}, cannot send {self.amount}")
        return {
            self.source: [Debited(amount=self.amount)],
            self.target: [Credited(amount=self.amount)],
        }


async def transfer_at_random(executor: Executor, seed: int, outcomes: Counter[str]) -> None:
    rng = random.Random(seed)
    for _ in range(TRANSFERS_PER_WORKER):
        source, target = rng.sample(ACCOUNTS, 2)
        try:
            await executor.execute(
                Transfer(source=source, target=target, amount=rng.randint(1, 60))
            )
        except Overdraft:
            outcomes["rejected"] += 1
        else:
            outcomes["succeeded"] += 1


class Ledger(msgspec.Struct, frozen=True):
    """What one run of the scenario left: the outcomes and the store read back."""

    outcomes: Counter[str]
    streams: dict[StreamId, list[StoredEvent]]
    log: list[StoredEvent]


async def run_transfers(store: EventStore, cache_size: int) -> Ledger:
    """Opens the accounts, runs every worker to the end, and reads the store back."""
    executor = Executor(
        store,
        registry,
        retry=RetryPolicy(max_attempts=200, initial_delay=0.0005, max_delay=0.005),
        cache_size=cache_size,
        rng=random.Random(7),
    )
    for account in ACCOUNTS:
        await executor.execute(Open(account=account, balance=OPENING_BALANCE))
    outcomes: Counter[str] = Counter()
    async with asyncio.TaskGroup() as workers:
        for seed in range(WORKERS):
            workers.create_task(transfer_at_random(executor, seed, outcomes))
    return Ledger(
        outcomes=outcomes,
        streams={account: await store.read_stream(account) for account in ACCOUNTS},
        log=await read_log(store),
    )


#: One run per (backend, cache size), shared by the tests below: each checks one
#: property of the same run, so the scenario is not repeated for every property.
_runs: dict[tuple[str, str], Ledger] = {}


class TransfersContract:
    """Part of :class:`StoreContract`: the concurrency contract, end to end: many writers
    moving money through the executor."""

    @pytest_asyncio.fixture(params=[0, 16], ids=["uncached", "cached"])
    async def ledger(self, request: pytest.FixtureRequest, make_store: MakeStore) -> Ledger:
        # The test's parameters name the backend (when the suite is parametrised over
        # several) and the cache size; the class names the backend otherwise.
        key = (f"{type(self).__module__}.{type(self).__qualname__}", request.node.callspec.id)
        if key not in _runs:
            _runs[key] = await run_transfers(await make_store(), cache_size=request.param)
        return _runs[key]

    @pytest.mark.asyncio
    async def test_every_transfer_either_succeeds_or_is_rejected(self, ledger: Ledger) -> None:
        outcomes = ledger.outcomes
        assert outcomes["succeeded"] + outcomes["rejected"] == WORKERS * TRANSFERS_PER_WORKER
        assert outcomes["succeeded"] > 0

    @pytest.mark.asyncio
    async def test_concurrent_transfers_conserve_money(self, ledger: Ledger) -> None:
        total = sum(
            balance_change(registry.decode(event))
            for events in ledger.streams.values()
            for event in events
        )
        assert total == OPENING_BALANCE * len(ACCOUNTS)

    @pytest.mark.asyncio
    async def test_concurrent_transfers_never_overdraw_an_account(self, ledger: Ledger) -> None:
        lowest = {}
        for account, events in ledger.streams.items():
            balance = lowest[account] = 0
            for event in events:
                balance += balance_change(registry.decode(event))
                lowest[account] = min(lowest[account], balance)
        assert lowest == dict.fromkeys(ACCOUNTS, 0)

    @pytest.mark.asyncio
    async def test_concurrent_transfers_keep_every_stream_contiguous(self, ledger: Ledger) -> None:
        for events in ledger.streams.values():
            assert [event.version for event in events] == list(range(1, len(events) + 1))

    @pytest.mark.asyncio
    async def test_concurrent_transfers_write_unique_event_ids(self, ledger: Ledger) -> None:
        ids = [event.event_id for event in ledger.log]
        assert len(set(ids)) == len(ids)

    @pytest.mark.asyncio
    async def test_concurrent_transfers_get_strictly_increasing_positions(
        self, ledger: Ledger
    ) -> None:
        positions = [event.position for event in ledger.log]
        assert all(before < after for before, after in itertools.pairwise(positions))

    @pytest.mark.asyncio
    async def test_the_log_holds_two_events_per_successful_transfer_and_the_opens(
        self,
        ledger: Ledger,
    ) -> None:
        succeeded = ledger.outcomes["succeeded"]
        assert len(ledger.log) == 2 * succeeded + len(ACCOUNTS)
        assert Counter(event.type for event in ledger.log) == {
            "Opened": len(ACCOUNTS),
            "Debited": succeeded,
            "Credited": succeeded,
        }

    @pytest.mark.asyncio
    async def test_the_log_holds_exactly_the_events_of_the_streams(self, ledger: Ledger) -> None:
        in_streams = sorted(
            event.position for events in ledger.streams.values() for event in events
        )
        assert in_streams == [event.position for event in ledger.log]
