"""The bank's commands, run through the executor on an in-memory store."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from eventcore import Executor, open_store
from eventcore.demo.bank import (
    AccountAlreadyOpen,
    AccountNotOpen,
    Deposited,
    InsufficientFunds,
    OpenAccount,
    Transfer,
    Withdrawn,
    registry,
)
from eventcore.errors import CommandRejected
from eventcore.store import EventStore
from eventcore.types import StreamId

ALICE = StreamId("account-alice")
BOB = StreamId("account-bob")


@pytest.fixture
async def store() -> AsyncIterator[EventStore]:
    store = await open_store("memory://")
    yield store
    await store.aclose()


@pytest.fixture
async def executor(store: EventStore) -> Executor:
    executor = Executor(store, registry)
    await executor.execute(OpenAccount(account=ALICE, initial_balance=100))
    await executor.execute(OpenAccount(account=BOB, initial_balance=10))
    return executor


async def balance(store: EventStore, account: StreamId) -> int:
    command = Transfer(source=account, target=account, amount=0, transfer_id="probe")
    state = command.initial_state()
    for stored in await store.read_stream(account):
        state = command.apply(state, account, registry.decode(stored))
    return state[account]


async def test_transfer_moves_money_between_both_accounts(
    executor: Executor, store: EventStore
) -> None:
    result = await executor.execute(
        Transfer(source=ALICE, target=BOB, amount=30, transfer_id="t-1")
    )
    assert result.events == (
        Withdrawn(amount=30, transfer_id="t-1"),
        Deposited(amount=30, transfer_id="t-1"),
    )
    assert await balance(store, ALICE) == 70
    assert await balance(store, BOB) == 40


async def test_transfer_may_empty_an_account(executor: Executor, store: EventStore) -> None:
    await executor.execute(Transfer(source=BOB, target=ALICE, amount=10, transfer_id="t-1"))
    assert await balance(store, BOB) == 0


async def test_overdraft_is_rejected_and_writes_nothing(
    executor: Executor, store: EventStore
) -> None:
    head = await store.last_position()
    with pytest.raises(InsufficientFunds) as rejected:
        await executor.execute(Transfer(source=BOB, target=ALICE, amount=11, transfer_id="t-1"))
    assert (rejected.value.account, rejected.value.balance, rejected.value.amount) == (BOB, 10, 11)
    assert await store.last_position() == head


async def test_transfer_to_an_unopened_account_is_rejected(executor: Executor) -> None:
    carol = StreamId("account-carol")
    with pytest.raises(AccountNotOpen, match="account-carol"):
        await executor.execute(Transfer(source=ALICE, target=carol, amount=1, transfer_id="t"))


@pytest.mark.parametrize("amount", [0, -5])
async def test_transfer_of_a_non_positive_amount_is_rejected(
    executor: Executor, amount: int
) -> None:
    with pytest.raises(CommandRejected, match="positive"):
        await executor.execute(Transfer(source=ALICE, target=BOB, amount=amount, transfer_id="t"))


async def test_transfer_to_the_same_account_is_rejected(executor: Executor) -> None:
    with pytest.raises(CommandRejected, match="to itself"):
        await executor.execute(Transfer(source=ALICE, target=ALICE, amount=1, transfer_id="t"))


async def test_an_account_opens_only_once(executor: Executor) -> None:
    with pytest.raises(AccountAlreadyOpen):
        await executor.execute(OpenAccount(account=ALICE, initial_balance=5))


async def test_a_negative_opening_balance_is_rejected(executor: Executor) -> None:
    with pytest.raises(CommandRejected, match="negative"):
        await executor.execute(OpenAccount(account=StreamId("account-dan"), initial_balance=-1))
