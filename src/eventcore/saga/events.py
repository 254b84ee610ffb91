"""The events a saga's stream is made of.

A saga's state is nothing but the fold of these (``eventcore.saga.state.evolve``), so
a saga owner that crashes resumes exactly where its stream says. Each event carries
``at``, the time (seconds since the epoch) the saga decided it, which is what the
timeline measures durations with. Register ``SAGA_EVENTS`` with the owner's
``EventRegistry``.
"""

from __future__ import annotations

from typing import Any

import msgspec

from eventcore.events import Event
from eventcore.saga.keys import Phase

__all__ = [
    "SAGA_EVENTS",
    "PlannedStep",
    "SagaAborted",
    "SagaCompensated",
    "SagaCompensationFailed",
    "SagaCompensationRequested",
    "SagaCompensationSucceeded",
    "SagaCompleted",
    "SagaEvent",
    "SagaLateReply",
    "SagaRetried",
    "SagaStarted",
    "SagaStepFailed",
    "SagaStepRequested",
    "SagaStepSucceeded",
    "SagaStepTimedOut",
    "SagaStuck",
]


class PlannedStep(msgspec.Struct, frozen=True):
    """A step as the saga planned it when it started: its name and whether it has a
    compensation. Kept in the stream so it reads without the definition's code."""

    name: str
    compensable: bool


class SagaStarted(Event):
    saga_type: str
    saga_id: str
    data: Any
    steps: tuple[PlannedStep, ...]
    at: float
    deadline_at: float | None = None


class SagaStepRequested(Event):
    step: str
    correlation_id: str
    idempotency_key: str
    at: float
    timeout_at: float | None = None


class SagaStepSucceeded(Event):
    step: str
    correlation_id: str
    result: Any
    at: float


class SagaStepFailed(Event):
    """The step's action was rejected (or its request could not be built: then there is
    no ``correlation_id``). The saga compensates."""

    step: str
    correlation_id: str | None
    reason: str
    at: float


class SagaStepTimedOut(Event):
    """No reply came in time (the step's timeout, or the saga's deadline). The saga
    compensates; a reply that comes later is recorded as late."""

    step: str
    correlation_id: str
    reason: str
    at: float


class SagaCompensationRequested(Event):
    step: str
    attempt: int
    correlation_id: str
    idempotency_key: str
    at: float
    timeout_at: float | None = None


class SagaCompensationSucceeded(Event):
    step: str
    correlation_id: str
    at: float


class SagaCompensationFailed(Event):
    """An attempt to compensate ``step`` failed: rejected, timed out (``timed_out``;
    its reply may still come) or not built (no ``correlation_id``). ``retry_at`` is when
    it is tried again; None when that was the last attempt (the saga is stuck)."""

    step: str
    attempt: int
    correlation_id: str | None
    reason: str
    at: float
    retry_at: float | None
    timed_out: bool = False


class SagaCompleted(Event):
    at: float


class SagaCompensated(Event):
    at: float


class SagaStuck(Event):
    step: str
    reason: str
    attempts: int
    at: float


class SagaRetried(Event):
    at: float
    operator: str = ""
    note: str = ""


class SagaAborted(Event):
    reason: str
    at: float
    operator: str = ""


class SagaLateReply(Event):
    """A reply to a request the saga no longer waited for. ``compensate``: it says a
    step's action happened, and the step asks for that to be undone."""

    step: str
    phase: Phase
    correlation_id: str
    succeeded: bool
    at: float
    result: Any = None
    reason: str = ""
    compensate: bool = False


SagaEvent = (
    SagaStarted
    | SagaStepRequested
    | SagaStepSucceeded
    | SagaStepFailed
    | SagaStepTimedOut
    | SagaCompensationRequested
    | SagaCompensationSucceeded
    | SagaCompensationFailed
    | SagaCompleted
    | SagaCompensated
    | SagaStuck
    | SagaRetried
    | SagaAborted
    | SagaLateReply
)

#: Every saga event type, to register with the saga owner's ``EventRegistry``.
SAGA_EVENTS: tuple[type[Event], ...] = (
    SagaStarted,
    SagaStepRequested,
    SagaStepSucceeded,
    SagaStepFailed,
    SagaStepTimedOut,
    SagaCompensationRequested,
    SagaCompensationSucceeded,
    SagaCompensationFailed,
    SagaCompleted,
    SagaCompensated,
    SagaStuck,
    SagaRetried,
    SagaAborted,
    SagaLateReply,
)
