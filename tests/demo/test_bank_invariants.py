"""``check_invariants`` accepts a sound bank history and names what breaks a bad one.

Histories are built directly as stored events, so each test breaks exactly one thing.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from eventcore.demo.bank import (
    AccountOpened,
    Check,
    Deposited,
    Withdrawn,
    check_invariants,
    registry,
)
from eventcore.events import Event
from eventcore.types import Metadata, StoredEvent, StreamId

A, B = "account-a", "account-b"


class History:
    """Stored events in log order; positions and versions follow on unless overridden."""

    def __init__(self) -> None:
        self.events: list[StoredEvent] = []
        self._versions: dict[str, int] = {}

    def add(
        self,
        stream: str,
        event: Event,
        *,
        version: int | None = None,
        position: int | None = None,
        event_id: uuid.UUID | None = None,
        event_type: str | None = None,
    ) -> History:
        version = version if version is not None else self._versions.get(stream, 0) + 1
        self._versions[stream] = version
        encoded = registry.encode(event)
        self.events.append(
            StoredEvent(
                position=position if position is not None else len(self.events) + 1,
                stream_id=StreamId(stream),
                version=version,
                event_id=event_id or uuid.uuid4(),
                type=event_type or encoded.type,
                schema_version=encoded.schema_version,
                data=encoded.data,
                metadata=Metadata(),
                recorded_at=datetime.now(UTC),
            )
        )
        return self

    def transfer(self, source: str, target: str, amount: int, transfer_id: str) -> History:
        self.add(source, Withdrawn(amount=amount, transfer_id=transfer_id))
        return self.add(target, Deposited(amount=amount, transfer_id=transfer_id))


def opened() -> History:
    return (
        History()
        .add(A, AccountOpened(initial_balance=100))
        .add(B, AccountOpened(initial_balance=50))
    )


def broken(checks: list[Check]) -> dict[str, tuple[str, ...]]:
    return {check.name: check.problems for check in checks if not check.ok}


def test_a_sound_history_passes_every_check() -> None:
    history = opened().transfer(A, B, 60, "t-1").transfer(B, A, 110, "t-2")
    checks = check_invariants(history.events, expected_total=150)
    assert broken(checks) == {}
    assert len(checks) == 8


def test_money_created_from_nothing_is_detected() -> None:
    history = opened().add(B, Deposited(amount=25, transfer_id="t-forged"))
    failures = broken(check_invariants(history.events))
    assert failures["money is conserved"] == (
        "accounts hold 175 in all, but 150 was paid in on opening",
    )
    assert failures["every transfer is one withdrawal and one equal deposit"] == (
        "transfer t-forged: 0 withdrawal(s), 1 deposit(s)",
    )


def test_opening_with_a_different_total_than_expected_is_detected() -> None:
    failures = broken(check_invariants(opened().events, expected_total=200))
    assert failures == {
        "money is conserved": ("accounts were opened with 150, expected 200",),
    }


def test_a_gap_in_versions_is_detected() -> None:
    history = opened().transfer(A, B, 10, "t-1")
    history.add(A, Withdrawn(amount=5, transfer_id="t-2"), version=4)
    history.add(B, Deposited(amount=5, transfer_id="t-2"))
    failures = broken(check_invariants(history.events))
    assert list(failures) == ["stream versions are contiguous from 1"]
    assert (
        "account-a@4 (position 5): version 4 follows version 2"
        in failures["stream versions are contiguous from 1"]
    )


def test_a_repeated_position_is_detected() -> None:
    history = opened().add(A, Withdrawn(amount=1, transfer_id="t"), position=2)
    history.add(B, Deposited(amount=1, transfer_id="t"))
    failures = broken(check_invariants(history.events))
    assert list(failures) == ["positions are unique and increasing"]


def test_a_repeated_event_id_is_detected() -> None:
    same = uuid.uuid4()
    history = History().add(A, AccountOpened(initial_balance=1), event_id=same)
    history.add(B, AccountOpened(initial_balance=1), event_id=same)
    assert list(broken(check_invariants(history.events))) == ["event ids are unique"]


def test_an_overdraft_is_detected_even_when_money_balances() -> None:
    history = opened().transfer(B, A, 80, "t-1")
    failures = broken(check_invariants(history.events))
    assert list(failures) == ["no account is ever overdrawn"]


def test_a_half_written_transfer_is_detected() -> None:
    history = opened().add(A, Withdrawn(amount=10, transfer_id="t-1"))
    failures = broken(check_invariants(history.events))
    assert set(failures) == {
        "money is conserved",
        "every transfer is one withdrawal and one equal deposit",
    }


def test_events_on_an_unopened_account_are_detected() -> None:
    history = opened().transfer(A, "account-ghost", 10, "t-1")
    failures = broken(check_invariants(history.events))
    assert "every account is opened once, by its first event" in failures


def test_a_foreign_event_type_is_reported_not_raised() -> None:
    history = opened().add(A, Withdrawn(amount=1, transfer_id="t"), event_type="Mystery")
    failures = broken(check_invariants(history.events))
    assert "every event is a bank event" in failures


def test_only_the_first_examples_are_kept_but_all_are_counted() -> None:
    history = opened()
    for n in range(8):
        history.add(B, Deposited(amount=1, transfer_id=f"t-{n}"))
    whole = next(
        check
        for check in check_invariants(history.events)
        if check.name.startswith("every transfer")
    )
    assert (len(whole.problems), whole.violations) == (5, 8)
