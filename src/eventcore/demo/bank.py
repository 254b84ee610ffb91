"""A small bank: accounts are streams, a transfer is one command over two of them.

It exists to exercise the guarantees the store and the executor promise, and to check
them afterwards from nothing but the stored history (``check_invariants``): a transfer
reads both accounts and appends to both atomically, so however many transfers race, no
money appears or vanishes, no account goes below zero, and no transfer is half-written.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from eventcore.command import Command, Writes
from eventcore.errors import CommandRejected, DecodeError
from eventcore.events import Event, EventRegistry
from eventcore.types import EventId, StoredEvent, StreamId

__all__ = [
    "AccountAlreadyOpen",
    "AccountNotOpen",
    "AccountOpened",
    "Audit",
    "Balances",
    "Check",
    "Deposited",
    "InsufficientFunds",
    "OpenAccount",
    "Transfer",
    "Withdrawn",
    "check_invariants",
    "failed",
    "registry",
]


# --- events ------------------------------------------------------------------------------


class AccountOpened(Event):
    initial_balance: int


class Deposited(Event):
    amount: int
    transfer_id: str


class Withdrawn(Event):
    amount: int
    transfer_id: str


#: Every event type the bank writes.
registry = EventRegistry([AccountOpened, Deposited, Withdrawn])


# --- rejections --------------------------------------------------------------------------


class AccountAlreadyOpen(CommandRejected):
    def __init__(self, account: str) -> None:
        self.account = account
        super().__init__(f"account {account!r} is already open")


class AccountNotOpen(CommandRejected):
    def __init__(self, account: str) -> None:
        self.account = account
        super().__init__(f"account {account!r} is not open")


class InsufficientFunds(CommandRejected):
    def __init__(self, account: str, balance: int, amount: int) -> None:
        self.account = account
        self.balance = balance
        self.amount = amount
        super().__init__(f"account {account!r} holds {balance}, cannot pay {amount}")


# --- commands ----------------------------------------------------------------------------

#: The folded state of the accounts a command read: balance by account. An account
#: missing from the mapping has not been opened.
Balances = dict[StreamId, int]


def _fold(balances: Balances, stream_id: StreamId, event: Event) -> Balances:
    # A new mapping per event keeps states immutable values, which is what lets an
    # executor cache them between runs.
    if isinstance(event, AccountOpened):
        return {**balances, stream_id: event.initial_balance}
    if isinstance(event, Deposited):
        return {**balances, stream_id: balances.get(stream_id, 0) + event.amount}
    if isinstance(event, Withdrawn):
        return {**balances, stream_id: balances.get(stream_id, 0) - event.amount}
    return balances


class OpenAccount(Command[Balances]):
    account: StreamId
    initial_balance: int

    def initial_state(self) -> Balances:
        return {}

    def apply(self, state: Balances, stream_id: StreamId, event: Event) -> Balances:
        return _fold(state, stream_id, event)

    def handle(self, state: Balances) -> Writes:
        if self.account in state:
            raise AccountAlreadyOpen(self.account)
        if self.initial_balance < 0:
            raise CommandRejected(
                f"an opening balance must not be negative, got {self.initial_balance}"
            )
        return {self.account: [AccountOpened(initial_balance=self.initial_balance)]}


class Transfer(Command[Balances]):
    """Move ``amount`` from ``source`` to ``target``; refused if ``source`` would go negative."""

    source: StreamId
    target: StreamId
    amount: int
    transfer_id: str

    def initial_state(self) -> Balances:
        return {}

    def apply(self, state: Balances, stream_id: StreamId, event: Event) -> Balances:
        return _fold(state, stream_id, event)

    def handle(self, state: Balances) -> Writes:
        if self.source == self.target:
            raise CommandRejected(f"cannot transfer from {self.source!r} to itself")
        if self.amount <= 0:
            raise CommandRejected(f"a transfer amount must be positive, got {self.amount}")
        for account in (self.source, self.target):
            if account not in state:
                raise AccountNotOpen(account)
        balance = state[self.source]
        if balance < self.amount:
            raise InsufficientFunds(self.source, balance, self.amount)
        return {
            self.source: [Withdrawn(amount=self.amount, transfer_id=self.transfer_id)],
            self.target: [Deposited(amount=self.amount, transfer_id=self.transfer_id)],
        }


# --- invariants --------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    """One invariant: its name, whether it held, and what broke it (first few cases)."""

    name: str
    problems: tuple[str, ...] = ()
    #: How many violations there were in all; ``problems`` keeps only the first few.
    violations: int = 0

    @property
    def ok(self) -> bool:
        return self.violations == 0


#: How many examples of one violation a report keeps; the rest are only counted.
_EXAMPLES = 5


@dataclass
class _Findings:
    name: str
    problems: list[str] = field(default_factory=list)
    violations: int = 0

    def add(self, problem: str) -> None:
        self.violations += 1
        if len(self.problems) < _EXAMPLES:
            self.problems.append(problem)

    def check(self) -> Check:
        return Check(self.name, tuple(self.problems), self.violations)


@dataclass
class _Leg:
    account: StreamId
    amount: int


class Audit:
    """Checks a bank's history one event at a time, in global-log order.

    It keeps one small record per account and per transfer plus the set of event ids,
    never the events themselves, so a long log is checked in bounded memory per account.
    """

    def __init__(self, *, expected_total: int | None = None) -> None:
        self._expected_total = expected_total
        self._positions = _Findings("positions are unique and increasing")
        self._ids = _Findings("event ids are unique")
        self._versions = _Findings("stream versions are contiguous from 1")
        self._opened = _Findings("every account is opened once, by its first event")
        self._decoded = _Findings("every event is a bank event")
        self._overdraft = _Findings("no account is ever overdrawn")
        self._whole = _Findings("every transfer is one withdrawal and one equal deposit")
        self._money = _Findings("money is conserved")
        self._last_position = 0
        self._event_ids: set[EventId] = set()
        self._versions_seen: dict[StreamId, int] = {}
        self._balances: dict[StreamId, int] = {}
        self._opened_total = 0
        self._withdrawals: dict[str, list[_Leg]] = {}
        self._deposits: dict[str, list[_Leg]] = {}
        self.events = 0

    def observe(self, stored: StoredEvent) -> None:
        self.events += 1
        self._check_place(stored)
        try:
            event = registry.decode(stored)
        except DecodeError as error:
            self._decoded.add(f"{_where(stored)}: {error}")
            return
        account = stored.stream_id
        if isinstance(event, AccountOpened):
            if stored.version != 1 or account in self._balances:
                self._opened.add(f"{_where(stored)}: AccountOpened is not the stream's first event")
            self._opened_total += event.initial_balance
            self._balances[account] = self._balances.get(account, 0) + event.initial_balance
            return
        if account not in self._balances:
            self._opened.add(f"{_where(stored)}: {stored.type} on an account never opened")
        if isinstance(event, Deposited):
            self._balances[account] = self._balances.get(account, 0) + event.amount
            self._deposits.setdefault(event.transfer_id, []).append(_Leg(account, event.amount))
        elif isinstance(event, Withdrawn):
            balance = self._balances.get(account, 0) - event.amount
            self._balances[account] = balance
            if balance < 0:
                self._overdraft.add(f"{_where(stored)}: balance went to {balance}")
            self._withdrawals.setdefault(event.transfer_id, []).append(_Leg(account, event.amount))

    def _check_place(self, stored: StoredEvent) -> None:
        if stored.position <= self._last_position:
            self._positions.add(
                f"position {stored.position} follows position {self._last_position}"
            )
        self._last_position = max(self._last_position, stored.position)
        if stored.event_id in self._event_ids:
            self._ids.add(f"{_where(stored)}: event id {stored.event_id} seen before")
        self._event_ids.add(stored.event_id)
        previous = self._versions_seen.get(stored.stream_id, 0)
        if stored.version != previous + 1:
            self._versions.add(
                f"{_where(stored)}: version {stored.version} follows version {previous}"
            )
        self._versions_seen[stored.stream_id] = max(previous, stored.version)

    @property
    def balances(self) -> dict[StreamId, int]:
        return dict(self._balances)

    @property
    def versions(self) -> dict[StreamId, int]:
        """The highest version seen of each stream."""
        return dict(self._versions_seen)

    @property
    def transfers(self) -> int:
        """Transfers with both legs in the history."""
        return sum(1 for key in self._withdrawals if key in self._deposits)

    def report(self) -> list[Check]:
        """Every invariant, held or not, for the history observed so far."""
        self._whole = _Findings(self._whole.name)
        for transfer_id in sorted(self._withdrawals.keys() | self._deposits.keys()):
            self._check_transfer(transfer_id)
        self._money = _Findings(self._money.name)
        held = sum(self._balances.values())
        if held != self._opened_total:
            self._money.add(
                f"accounts hold {held} in all, but {self._opened_total} was paid in on opening"
            )
        if self._expected_total is not None and self._opened_total != self._expected_total:
            self._money.add(
                f"accounts were opened with {self._opened_total}, expected {self._expected_total}"
            )
        return [
            findings.check()
            for findings in (
                self._positions,
                self._ids,
                self._versions,
                self._decoded,
                self._opened,
                self._whole,
                self._overdraft,
                self._money,
            )
        ]

    def _check_transfer(self, transfer_id: str) -> None:
        out = self._withdrawals.get(transfer_id, [])
        into = self._deposits.get(transfer_id, [])
        if len(out) != 1 or len(into) != 1:
            self._whole.add(
                f"transfer {transfer_id}: {len(out)} withdrawal(s), {len(into)} deposit(s)"
            )
        elif out[0].amount != into[0].amount:
            self._whole.add(
                f"transfer {transfer_id}: {out[0].amount} withdrawn, {into[0].amount} deposited"
            )
        elif out[0].account == into[0].account:
            self._whole.add(f"transfer {transfer_id}: from and to the same account")


def _where(stored: StoredEvent) -> str:
    return f"{stored.stream_id}@{stored.version} (position {stored.position})"


def check_invariants(
    history: Iterable[StoredEvent], *, expected_total: int | None = None
) -> list[Check]:
    """Check a bank's stored history, given in global-log order.

    ``expected_total`` is the money the accounts were opened with, when the caller
    knows it independently of the history.
    """
    audit = Audit(expected_total=expected_total)
    for stored in history:
        audit.observe(stored)
    return audit.report()


def failed(checks: Iterable[Check]) -> Iterator[Check]:
    return (check for check in checks if not check.ok)
