"""A saga's state: the fold of its events, and nothing else.

``evolve(state, event)`` is pure and needs no saga definition, so whatever reads a
saga's stream — the saga worker after a crash, ``eventcore sagas show``, a status API —
rebuilds the same state from the same events.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

import msgspec

from eventcore.errors import InvalidInput
from eventcore.saga import events as ev
from eventcore.saga.keys import (
    SAGA_DEADLINE,
    Phase,
    correlation_id,
    idempotency_key,
    retry_deadline,
    timeout_deadline,
)

__all__ = ["TERMINAL", "Issued", "Pending", "SagaState", "SagaStatus", "evolve", "replay"]

#: Where a saga is: ``running`` its steps, ``completed`` them all, ``compensating`` the
#: completed ones after a failure, ``compensated`` (undone), ``stuck`` (a compensation
#: ran out of attempts: an operator must retry or abort), ``aborted`` (by an operator).
SagaStatus = Literal["running", "completed", "compensating", "compensated", "stuck", "aborted"]

#: Statuses in which no request is sent and no deadline is set. ``compensated`` is left
#: only by a late reply that a step asks to compensate (``compensate_late_success``).
TERMINAL: frozenset[SagaStatus] = frozenset({"completed", "compensated", "aborted"})


class Pending(msgspec.Struct, frozen=True):
    """The one request a saga waits for a reply to."""

    step: str
    phase: Phase
    attempt: int
    correlation_id: str
    requested_at: float
    timeout_at: float | None


class Issued(msgspec.Struct, frozen=True):
    """A request the saga sent, found by its correlation id when a reply comes."""

    step: str
    phase: Phase
    attempt: int


class SagaState(msgspec.Struct, frozen=True, kw_only=True):
    saga_type: str
    saga_id: str
    data: Any
    steps: tuple[ev.PlannedStep, ...]
    status: SagaStatus
    started_at: float
    deadline_at: float | None
    #: Steps whose action succeeded in time, in order; their results by name (with those
    #: of late successes that are compensated).
    completed: tuple[str, ...] = ()
    results: dict[str, Any] = {}
    pending: Pending | None = None
    issued: dict[str, Issued] = {}
    #: Correlation ids whose reply has been taken (in time or late): a second is ignored.
    answered: frozenset[str] = frozenset()
    #: What is left to compensate, the one being compensated first.
    to_compensate: tuple[str, ...] = ()
    compensated: tuple[str, ...] = ()
    #: The last compensation attempt made of each step.
    attempts: dict[str, int] = {}
    #: The first attempt that counts against the retry policy (an operator's retry
    #: gives a fresh set).
    budget_from: int = 1
    retry_at: float | None = None
    stuck_reason: str | None = None
    ended_at: float | None = None
    #: How many events were folded: the stream's version.
    version: int = 0

    def step_names(self) -> tuple[str, ...]:
        return tuple(step.name for step in self.steps)

    def next_step(self) -> str | None:
        """The step to run after the completed ones, or None after the last."""
        index = len(self.completed)
        return self.steps[index].name if index < len(self.steps) else None

    def key(self, step: str, phase: Phase) -> str:
        return idempotency_key(self.saga_type, self.saga_id, step, phase)

    def deadlines(self) -> dict[str, float]:
        """The deadlines that must be set now, by key: a fold of the stream, so a saga
        worker that restarts sets them again from the state alone."""
        due: dict[str, float] = {}
        if self.status == "running" and self.deadline_at is not None:
            due[SAGA_DEADLINE] = self.deadline_at
        if self.pending is not None and self.pending.timeout_at is not None:
            due[timeout_deadline(self.pending.correlation_id)] = self.pending.timeout_at
        if self.status == "compensating" and self.pending is None and self.retry_at is not None:
            head = self.to_compensate[0]
            failed = correlation_id(self.key(head, "compensation"), self.attempts[head])
            due[retry_deadline(failed)] = self.retry_at
        return due


def replay(events: Iterable[ev.SagaEvent]) -> SagaState | None:
    """The state a saga's events fold to (None for no events)."""
    state: SagaState | None = None
    for event in events:
        state = evolve(state, event)
    return state


def evolve(state: SagaState | None, event: ev.SagaEvent) -> SagaState:
    """The state after ``event``. Events come from ``decide``; one that cannot follow
    ``state`` (a stream that is not a saga's) raises ``InvalidInput``."""
    if state is None:
        if not isinstance(event, ev.SagaStarted):
            raise InvalidInput(
                f"a saga's stream starts with SagaStarted, not {type(event).__name__}"
            )
        return SagaState(
            saga_type=event.saga_type,
            saga_id=event.saga_id,
            data=event.data,
            steps=event.steps,
            status="running",
            started_at=event.at,
            deadline_at=event.deadline_at,
            version=1,
        )
    changes = _changes(state, event)
    return msgspec.structs.replace(state, version=state.version + 1, **changes)


def _changes(state: SagaState, event: ev.SagaEvent) -> dict[str, Any]:
    match event:
        case ev.SagaStepRequested():
            return {
                "pending": Pending(
                    event.step, "action", 1, event.correlation_id, event.at, event.timeout_at
                ),
                "issued": {**state.issued, event.correlation_id: Issued(event.step, "action", 1)},
            }
        case ev.SagaStepSucceeded():
            return {
                "pending": None,
                "completed": (*state.completed, event.step),
                "results": {**state.results, event.step: event.result},
                "answered": state.answered | {event.correlation_id},
            }
        case ev.SagaStepFailed() | ev.SagaStepTimedOut():
            answered = state.answered
            if isinstance(event, ev.SagaStepFailed) and event.correlation_id is not None:
                answered = answered | {event.correlation_id}
            compensable = {step.name for step in state.steps if step.compensable}
            return {
                "pending": None,
                "answered": answered,
                "status": "compensating",
                "to_compensate": tuple(
                    name for name in reversed(state.completed) if name in compensable
                ),
                "budget_from": 1,
            }
        case ev.SagaCompensationRequested():
            issued = Issued(event.step, "compensation", event.attempt)
            return {
                "pending": Pending(
                    event.step,
                    "compensation",
                    event.attempt,
                    event.correlation_id,
                    event.at,
                    event.timeout_at,
                ),
                "issued": {**state.issued, event.correlation_id: issued},
                "attempts": {**state.attempts, event.step: event.attempt},
                "retry_at": None,
            }
        case ev.SagaCompensationSucceeded():
            return {
                # A success of an earlier attempt also ends a later one in flight: both
                # ran under the same idempotency key, so the compensation is done.
                "pending": None,
                "answered": state.answered | {event.correlation_id},
                "compensated": (*state.compensated, event.step),
                "to_compensate": tuple(name for name in state.to_compensate if name != event.step),
                "status": "compensating",
                "stuck_reason": None,
                "retry_at": None,
                "budget_from": 1,
            }
        case ev.SagaCompensationFailed():
            answered = state.answered
            if event.correlation_id is not None and not event.timed_out:
                answered = answered | {event.correlation_id}
            return {
                "pending": None,
                "answered": answered,
                "attempts": {**state.attempts, event.step: event.attempt},
                "retry_at": event.retry_at,
            }
        case ev.SagaStuck():
            return {"status": "stuck", "stuck_reason": event.reason}
        case ev.SagaRetried():
            head = state.to_compensate[0]
            return {
                "status": "compensating",
                "stuck_reason": None,
                "budget_from": state.attempts.get(head, 0) + 1,
            }
        case ev.SagaAborted():
            return {"status": "aborted", "pending": None, "retry_at": None, "ended_at": event.at}
        case ev.SagaCompleted():
            return {"status": "completed", "ended_at": event.at}
        case ev.SagaCompensated():
            return {"status": "compensated", "ended_at": event.at}
        case ev.SagaLateReply():
            changes: dict[str, Any] = {"answered": state.answered | {event.correlation_id}}
            if event.compensate:
                changes["results"] = {**state.results, event.step: event.result}
                if state.status == "compensated":
                    changes.update(
                        status="compensating",
                        to_compensate=(event.step,),
                        budget_from=1,
                        ended_at=None,
                    )
                elif state.to_compensate:
                    # After the compensation under way: it cannot be called back.
                    head, *rest = state.to_compensate
                    changes["to_compensate"] = (head, event.step, *rest)
                else:
                    changes["to_compensate"] = (event.step,)
            return changes
        case ev.SagaStarted():
            raise InvalidInput(f"saga {state.saga_id!r} has already started")
    raise InvalidInput(f"{type(event).__name__} is not a saga event")
