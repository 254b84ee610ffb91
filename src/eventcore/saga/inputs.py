"""What a saga is fed: a start, a reply, a deadline that fell due, an operator's action.

``decide`` takes one of these at a time. They are plain values, so the I/O shell that
reads them off the bus, the timer and the command line only has to build them.
"""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = ["Abort", "DeadlineFired", "Input", "Reply", "Retry", "Start", "as_stored"]


def as_stored(value: Any) -> Any:
    """``value`` as a saga's stream gives it back: JSON builtins (a tuple becomes a list).

    The state a saga decides on must equal the state a replay of its stored stream
    folds to; keeping a value as it is read back makes the two the same. Raises
    ``TypeError`` for a value JSON cannot hold.
    """
    return msgspec.json.decode(msgspec.json.encode(value))


class Start(msgspec.Struct, frozen=True, kw_only=True):
    """Start a saga (made by ``Saga.start`` or ``Saga.start_from``, which check it).

    ``data`` is the start data as JSON-ready builtins. A second start of an id that
    already started changes nothing.
    """

    saga_type: str
    saga_id: str
    data: Any


class Reply(msgspec.Struct, frozen=True, kw_only=True):
    """A participant's answer to the request ``correlation_id`` names: it succeeded
    with ``result``, or it was rejected for ``reason``."""

    correlation_id: str
    succeeded: bool
    result: Any = None
    reason: str = ""

    @classmethod
    def success(cls, correlation_id: str, result: Any = None) -> Reply:
        return cls(correlation_id=correlation_id, succeeded=True, result=result)

    @classmethod
    def rejection(cls, correlation_id: str, reason: str) -> Reply:
        return cls(correlation_id=correlation_id, succeeded=False, reason=reason)


class DeadlineFired(msgspec.Struct, frozen=True, kw_only=True):
    """The deadline ``key`` (one the saga asked for in a ``Decision``) fell due."""

    key: str


class Retry(msgspec.Struct, frozen=True, kw_only=True):
    """An operator resumes a stuck saga: its compensation gets a fresh set of attempts."""

    operator: str = ""
    note: str = ""


class Abort(msgspec.Struct, frozen=True, kw_only=True):
    """An operator ends a stuck saga as aborted: what is left to undo is theirs."""

    reason: str
    operator: str = ""


Input = Start | Reply | DeadlineFired | Retry | Abort
