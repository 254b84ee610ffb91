"""What an operator reads about one saga: its steps, their attempts, replies and
durations, and every event in order.

``SagaView.of(events)`` builds it from the saga's stream alone — no definition, no
clock — so ``eventcore sagas show`` and the status API can show any saga in any store.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec

from eventcore.errors import InvalidInput
from eventcore.saga import events as ev
from eventcore.saga.keys import Phase
from eventcore.saga.state import SagaState, SagaStatus, evolve

__all__ = ["AttemptView", "Entry", "LateReplyView", "SagaView", "StepStatus", "StepView"]

#: How an attempt ended: still ``waiting`` for its reply, ``succeeded``, ``failed``
#: (rejected), ``timed out``, ``not sent`` (its request could not be built), or
#: ``superseded`` (an earlier attempt of the same compensation succeeded late, and its
#: reply is no longer awaited).
Outcome = Literal["waiting", "succeeded", "failed", "timed out", "not sent", "superseded"]

#: Where a step is: ``not run`` yet, ``running`` (its action awaits a reply),
#: ``succeeded``, ``failed``, ``timed out``, ``compensating``, ``compensated``.
StepStatus = Literal[
    "not run", "running", "succeeded", "failed", "timed out", "compensating", "compensated"
]


# An action is never superseded: it is tried once.
_STEP_STATUS: dict[Outcome, StepStatus] = {
    "waiting": "running",
    "succeeded": "succeeded",
    "failed": "failed",
    "not sent": "failed",
    "timed out": "timed out",
    "superseded": "running",
}


class AttemptView(msgspec.Struct, frozen=True, kw_only=True):
    phase: Phase
    attempt: int
    correlation_id: str | None
    requested_at: float
    outcome: Outcome
    ended_at: float | None = None
    #: Seconds from the request to its reply (or timeout); None while waiting.
    duration: float | None = None
    reason: str = ""
    #: When a failed compensation is tried again (None: not again).
    retry_at: float | None = None


class LateReplyView(msgspec.Struct, frozen=True, kw_only=True):
    phase: Phase
    correlation_id: str
    succeeded: bool
    at: float
    reason: str = ""
    compensate: bool = False


class StepView(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    status: StepStatus
    compensable: bool
    attempts: tuple[AttemptView, ...] = ()
    late_replies: tuple[LateReplyView, ...] = ()
    result: Any = None


class Entry(msgspec.Struct, frozen=True, kw_only=True):
    """One event of the saga, in words."""

    at: float
    event: str
    step: str | None
    detail: str


class SagaView(msgspec.Struct, frozen=True, kw_only=True):
    saga_type: str
    saga_id: str
    status: SagaStatus
    started_at: float
    ended_at: float | None
    duration: float | None
    data: Any
    stuck_reason: str | None
    steps: tuple[StepView, ...]
    timeline: tuple[Entry, ...]
    state: SagaState

    @classmethod
    def of(cls, events: Iterable[ev.SagaEvent]) -> SagaView:
        """The view of a saga's stream. Raises ``InvalidInput`` for no events, or a
        stream that is not a saga's."""
        builder = _Builder()
        for event in events:
            builder.add(event)
        return builder.view()


@dataclass
class _Step:
    name: str
    compensable: bool
    attempts: list[AttemptView] = field(default_factory=list)
    late: list[LateReplyView] = field(default_factory=list)
    result: Any = None
    compensated: bool = False

    def close(self, correlation: str, outcome: Outcome, at: float, **extra: Any) -> None:
        """End the attempt ``correlation`` names (a late success ends a timed-out one)."""
        for index, attempt in enumerate(self.attempts):
            if attempt.correlation_id == correlation:
                self.attempts[index] = msgspec.structs.replace(
                    attempt,
                    outcome=outcome,
                    ended_at=at,
                    duration=at - attempt.requested_at,
                    **extra,
                )

    def supersede(self, at: float) -> None:
        """Mark the compensation attempts still waiting as no longer awaited."""
        for index, attempt in enumerate(self.attempts):
            if attempt.phase == "compensation" and attempt.outcome == "waiting":
                self.attempts[index] = msgspec.structs.replace(
                    attempt, outcome="superseded", ended_at=at
                )

    def status(self) -> StepStatus:
        if self.compensated:
            return "compensated"
        if any(attempt.phase == "compensation" for attempt in self.attempts):
            return "compensating"
        actions = [attempt for attempt in self.attempts if attempt.phase == "action"]
        if not actions:
            return "not run"
        return _STEP_STATUS[actions[-1].outcome]


class _Builder:
    def __init__(self) -> None:
        self.state: SagaState | None = None
        self.steps: dict[str, _Step] = {}
        self.timeline: list[Entry] = []

    def add(self, event: ev.SagaEvent) -> None:
        self.state = evolve(self.state, event)
        step, detail = self._record(event)
        self.timeline.append(
            Entry(at=event.at, event=type(event).__name__, step=step, detail=detail)
        )

    def _record(self, event: ev.SagaEvent) -> tuple[str | None, str]:
        match event:
            case ev.SagaStarted():
                for planned in event.steps:
                    self.steps[planned.name] = _Step(planned.name, planned.compensable)
                return None, f"started {event.saga_type} {event.saga_id!r}"
            case ev.SagaStepRequested():
                self.steps[event.step].attempts.append(
                    AttemptView(
                        phase="action",
                        attempt=1,
                        correlation_id=event.correlation_id,
                        requested_at=event.at,
                        outcome="waiting",
                    )
                )
                return event.step, "action requested"
            case ev.SagaStepSucceeded():
                step = self.steps[event.step]
                step.result = event.result
                step.close(event.correlation_id, "succeeded", event.at)
                return event.step, "action succeeded"
            case ev.SagaStepFailed():
                step = self.steps[event.step]
                if event.correlation_id is None:
                    step.attempts.append(_not_sent("action", 1, event.at, event.reason))
                else:
                    step.close(event.correlation_id, "failed", event.at, reason=event.reason)
                return event.step, f"action failed: {event.reason}"
            case ev.SagaStepTimedOut():
                self.steps[event.step].close(
                    event.correlation_id, "timed out", event.at, reason=event.reason
                )
                return event.step, f"action timed out: {event.reason}"
            case ev.SagaCompensationRequested():
                self.steps[event.step].attempts.append(
                    AttemptView(
                        phase="compensation",
                        attempt=event.attempt,
                        correlation_id=event.correlation_id,
                        requested_at=event.at,
                        outcome="waiting",
                    )
                )
                return event.step, f"compensation requested (attempt {event.attempt})"
            case ev.SagaCompensationSucceeded():
                step = self.steps[event.step]
                step.compensated = True
                step.close(event.correlation_id, "succeeded", event.at)
                step.supersede(event.at)
                return event.step, "compensation succeeded"
            case ev.SagaCompensationFailed():
                step = self.steps[event.step]
                outcome: Outcome = "timed out" if event.timed_out else "failed"
                if event.correlation_id is None:
                    step.attempts.append(
                        _not_sent(
                            "compensation", event.attempt, event.at, event.reason, event.retry_at
                        )
                    )
                else:
                    step.close(
                        event.correlation_id,
                        outcome,
                        event.at,
                        reason=event.reason,
                        retry_at=event.retry_at,
                    )
                then = "" if event.retry_at is None else f"; again at {event.retry_at:.3f}"
                return event.step, f"compensation attempt {event.attempt} {outcome}: " + (
                    f"{event.reason}{then}"
                )
            case ev.SagaLateReply():
                self.steps[event.step].late.append(
                    LateReplyView(
                        phase=event.phase,
                        correlation_id=event.correlation_id,
                        succeeded=event.succeeded,
                        at=event.at,
                        reason=event.reason,
                        compensate=event.compensate,
                    )
                )
                said = "succeeded" if event.succeeded else f"failed: {event.reason}"
                then = "; it will be compensated" if event.compensate else "; ignored"
                return event.step, f"late reply to the {event.phase}: {said}{then}"
            case ev.SagaStuck():
                return event.step, f"stuck: {event.reason}"
            case ev.SagaRetried():
                by = f" by {event.operator}" if event.operator else ""
                return None, f"retried{by}" + (f": {event.note}" if event.note else "")
            case ev.SagaAborted():
                by = f" by {event.operator}" if event.operator else ""
                return None, f"aborted{by}: {event.reason}"
            case ev.SagaCompleted():
                return None, "completed"
            case ev.SagaCompensated():
                return None, "compensated"
        raise InvalidInput(f"{type(event).__name__} is not a saga event")

    def view(self) -> SagaView:
        state = self.state
        if state is None:
            raise InvalidInput("a saga's view needs its events; none were given")
        return SagaView(
            saga_type=state.saga_type,
            saga_id=state.saga_id,
            status=state.status,
            started_at=state.started_at,
            ended_at=state.ended_at,
            duration=None if state.ended_at is None else state.ended_at - state.started_at,
            data=state.data,
            stuck_reason=state.stuck_reason,
            steps=tuple(
                StepView(
                    name=step.name,
                    status=step.status(),
                    compensable=step.compensable,
                    attempts=tuple(step.attempts),
                    late_replies=tuple(step.late),
                    result=step.result,
                )
                for step in self.steps.values()
            ),
            timeline=tuple(self.timeline),
            state=state,
        )


def _not_sent(
    phase: Phase, attempt: int, at: float, reason: str, retry_at: float | None = None
) -> AttemptView:
    """An attempt whose request could not be built: it ends as it begins, with ``reason``."""
    return AttemptView(
        phase=phase,
        attempt=attempt,
        correlation_id=None,
        requested_at=at,
        outcome="not sent",
        ended_at=at,
        duration=0.0,
        reason=reason,
        retry_at=retry_at,
    )
