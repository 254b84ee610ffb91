"""Claims on dead letters taken back for retry, judged alike by every backend.

A claim is kept in the letter itself (``status="claimed"``, ``claimed_by``,
``claimed_until``) so that the letter never leaves the box before it is handled, and
expiry is judged by the wall clock, the one clock every process shares.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec

from eventcore.messaging.bus import DeadLetter

__all__ = ["claimable", "claimed", "unclaimed", "utc_now"]


def claimable(letter: DeadLetter, now: datetime) -> bool:
    """Marked for retry, or claimed by a holder whose claim ran out."""
    if letter.status == "retry":
        return True
    return (
        letter.status == "claimed"
        and letter.claimed_until is not None
        and letter.claimed_until <= now
    )


def claimed(letter: DeadLetter, holder: str, now: datetime, lease: float) -> DeadLetter:
    return msgspec.structs.replace(
        letter, status="claimed", claimed_by=holder, claimed_until=now + timedelta(seconds=lease)
    )


def unclaimed(letter: DeadLetter) -> DeadLetter:
    """``letter`` marked for retry again, free for the next claimer."""
    return msgspec.structs.replace(letter, status="retry", claimed_by=None, claimed_until=None)


def utc_now() -> datetime:
    return datetime.now(UTC)
