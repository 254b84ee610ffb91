"""The pure core of a saga: ``decide(saga, state, input, now)``.

It reads the saga's state (the fold of its stream) and one input — a start, a reply, a
deadline that fell due, an operator's retry or abort — and answers with a ``Decision``:
the events to append to the saga's stream, the requests to send (each with its
idempotency key and correlation id) and the deadlines to set and to cancel. It performs
no I/O and reads no clock (``now`` is given), so every rule below is tested without a
store, a bus or a timer; the saga worker only appends the events, sends the requests
through the outbox in the same append, and keeps the deadlines.

The rules:

- steps run in order, one request in flight at a time; the last success completes;
- a step rejected, timed out, or past the saga's deadline makes the saga compensate the
  completed steps in reverse order;
- each compensation is tried until it succeeds, waiting ``compensation_retry``'s delay
  between attempts (a deadline brings the next one); after ``max_attempts`` the saga is
  ``stuck`` with the reason; an operator's ``Retry`` gives it a fresh set of attempts,
  ``Abort`` ends it;
- a reply to a request the saga stopped waiting for is recorded as late and changes
  nothing — but a success of an earlier attempt of the compensation under way completes
  it (same key: same effect), and a late success of a step that sets
  ``compensate_late_success`` has that step compensated too;
- a reply with an unknown correlation id, a second reply, a deadline that is not (or not
  yet) due and a second start change nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import msgspec

from eventcore.errors import InvalidSagaInput
from eventcore.saga import events as ev
from eventcore.saga.definition import Action, Call, Local, Saga, SagaContext, Send, Step
from eventcore.saga.inputs import Abort, DeadlineFired, Input, Reply, Retry, Start, as_stored
from eventcore.saga.keys import SAGA_DEADLINE, Phase, correlation_id, timeout_deadline
from eventcore.saga.state import SagaState, evolve

__all__ = [
    "Decision",
    "InvokeCall",
    "Request",
    "RunLocal",
    "SendCommand",
    "decide",
    "outstanding",
]


class Request(msgspec.Struct, frozen=True, kw_only=True):
    """A request a saga sends: a step's action or compensation, one attempt of it.

    ``idempotency_key`` is the same for every attempt of the same step and phase of the
    same saga; the receiver runs a key once. ``correlation_id`` is the attempt's own:
    the reply must carry it back. ``timeout_at`` is when the saga stops waiting.
    """

    saga_type: str
    saga_id: str
    step: str
    phase: Phase
    attempt: int
    idempotency_key: str
    correlation_id: str
    timeout_at: float | None


class SendCommand(Request, frozen=True, kw_only=True):
    """Send ``command`` to ``service`` over the bus."""

    service: str
    command: object


class RunLocal(Request, frozen=True, kw_only=True):
    """Run ``command`` in the saga's own service."""

    command: object


class InvokeCall(Request, frozen=True, kw_only=True):
    """Await ``invoke()``: the step's ``function`` with its ``context`` and key."""

    function: Callable[[SagaContext[Any], str], Awaitable[object]]
    context: SagaContext[Any]

    def invoke(self) -> Awaitable[object]:
        return self.function(self.context, self.idempotency_key)


class Decision(msgspec.Struct, frozen=True):
    """What to do after an input: append ``events`` (in this order, in one append with
    the ``requests``), send ``requests``, set ``set_deadlines`` (key → when) and cancel
    ``cancel_deadlines``. ``state`` is the saga's state after the events."""

    state: SagaState | None
    events: tuple[ev.SagaEvent, ...] = ()
    requests: tuple[Request, ...] = ()
    set_deadlines: Mapping[str, float] = {}
    cancel_deadlines: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        return bool(self.events)


def decide(saga: Saga[Any], state: SagaState | None, input: Input, now: float) -> Decision:
    """What ``saga`` does with ``input`` at time ``now`` (see the module doc).

    Raises ``InvalidSagaInput`` for an input the saga refuses: a start of another saga
    type, an operator's action on a saga that is not stuck (or not started), a reply
    whose result cannot be stored. Nothing is decided then.
    """
    if isinstance(input, Start):
        if input.saga_type != saga.name:
            raise InvalidSagaInput(
                saga.name, input.saga_id, f"a start of {input.saga_type!r} was given to it"
            )
        if state is not None:
            return Decision(state)
        return _start(saga, input, now)
    if state is None:
        if isinstance(input, Retry | Abort):
            raise InvalidSagaInput(saga.name, "", "it has not started, so it cannot be repaired")
        return Decision(None)
    if state.saga_type != saga.name:
        raise InvalidSagaInput(
            saga.name, state.saga_id, f"its state is that of a {state.saga_type!r} saga"
        )
    plan = _Plan(saga, state, now)
    match input:
        case Reply():
            plan.reply(input)
        case DeadlineFired():
            plan.deadline(input.key)
        case Retry():
            plan.operator_retry(input)
        case Abort():
            plan.operator_abort(input)
    return plan.decision(state)


def outstanding(saga: Saga[Any], state: SagaState) -> Request | None:
    """The request ``state`` waits for a reply to, built again: what a saga worker that
    restarted sends once more (same key, same correlation id) when the first copy may
    not have left, as for a ``Call`` that no outbox carries."""
    pending = state.pending
    if pending is None:
        return None
    try:
        step = _step(saga, pending.step)
    except LookupError as error:
        raise InvalidSagaInput(saga.name, state.saga_id, str(error)) from None
    action = step.action if pending.phase == "action" else step.compensation
    if action is None:
        raise InvalidSagaInput(saga.name, state.saga_id, f"step {step.name!r} has no compensation")
    plan = _Plan(saga, state, state.started_at)
    return plan.build(action, pending.step, pending.phase, pending.attempt, pending.timeout_at)


def _start(saga: Saga[Any], start: Start, now: float) -> Decision:
    plan = _Plan(saga, None, now)
    plan.emit(
        ev.SagaStarted(
            saga_type=saga.name,
            saga_id=start.saga_id,
            data=start.data,
            steps=tuple(
                ev.PlannedStep(step.name, step.compensation is not None) for step in saga.steps
            ),
            at=now,
            deadline_at=now + saga.deadline if saga.deadline is not None else None,
        )
    )
    plan.request_step(saga.steps[0].name)
    return plan.decision(None)


def _step(saga: Saga[Any], name: str) -> Step[Any, Any]:
    try:
        return saga.step(name)
    except KeyError:
        # A definition changed under a running saga. Inside a decision this fails the
        # step or the compensation attempt with this reason, so the saga ends stuck
        # where an operator sees it rather than refusing every input from now on.
        raise LookupError(f"the definition of {saga.name!r} has no step {name!r}") from None


class _Plan:
    """The decision being made: events are folded into the state as they are emitted,
    so each rule reads the state the previous one left."""

    def __init__(self, saga: Saga[Any], state: SagaState | None, now: float) -> None:
        self.saga = saga
        self._state = state
        self.now = now
        self.events: list[ev.SagaEvent] = []
        self.requests: list[Request] = []

    @property
    def state(self) -> SagaState:
        assert self._state is not None, "a saga's first event is SagaStarted"
        return self._state

    def emit(self, event: ev.SagaEvent) -> None:
        self.events.append(event)
        self._state = evolve(self._state, event)

    def decision(self, before: SagaState | None) -> Decision:
        # Deadlines are a function of the state, so what to set and cancel is the
        # difference between the state before and after: never one forgotten.
        was = before.deadlines() if before is not None else {}
        now = self._state.deadlines() if self._state is not None else {}
        return Decision(
            self._state,
            tuple(self.events),
            tuple(self.requests),
            {key: at for key, at in now.items() if was.get(key) != at},
            tuple(key for key in was if key not in now),
        )

    # --- forward --------------------------------------------------------------------

    def request_step(self, name: str) -> None:
        try:
            step = _step(self.saga, name)
            timeout_at = self.now + step.timeout
            request = self.build(step.action, name, "action", 1, timeout_at)
        except Exception as error:
            # A builder that raises is a bug in the definition; the saga records it and
            # undoes what it did rather than stopping half way.
            self.emit(
                ev.SagaStepFailed(
                    step=name,
                    correlation_id=None,
                    reason=f"its request could not be built: {error!r}",
                    at=self.now,
                )
            )
            self.compensate()
            return
        self.emit(
            ev.SagaStepRequested(
                step=name,
                correlation_id=request.correlation_id,
                idempotency_key=request.idempotency_key,
                at=self.now,
                timeout_at=timeout_at,
            )
        )
        self.requests.append(request)

    def advance(self) -> None:
        following = self.state.next_step()
        if following is None:
            self.emit(ev.SagaCompleted(at=self.now))
        else:
            self.request_step(following)

    # --- backward -------------------------------------------------------------------

    def compensate(self) -> None:
        """Compensate the next step in line, or end the saga as compensated."""
        if not self.state.to_compensate:
            self.emit(ev.SagaCompensated(at=self.now))
            return
        self.request_compensation(self.state.to_compensate[0])

    def request_compensation(self, name: str) -> None:
        attempt = self.state.attempts.get(name, 0) + 1
        try:
            step = _step(self.saga, name)
            timeout_at = self.now + step.compensation_timeout
            if step.compensation is None:
                raise LookupError(f"step {name!r} has no compensation in the definition")
            request = self.build(step.compensation, name, "compensation", attempt, timeout_at)
        except Exception as error:
            self.compensation_failed(
                name, attempt, None, f"its request could not be built: {error!r}"
            )
            return
        self.emit(
            ev.SagaCompensationRequested(
                step=name,
                attempt=attempt,
                correlation_id=request.correlation_id,
                idempotency_key=request.idempotency_key,
                at=self.now,
                timeout_at=timeout_at,
            )
        )
        self.requests.append(request)

    def compensation_failed(
        self,
        name: str,
        attempt: int,
        correlation: str | None,
        reason: str,
        *,
        timed_out: bool = False,
    ) -> None:
        policy = self.saga.compensation_retry
        used = attempt - self.state.budget_from + 1
        last = used >= policy.max_attempts
        self.emit(
            ev.SagaCompensationFailed(
                step=name,
                attempt=attempt,
                correlation_id=correlation,
                reason=reason,
                at=self.now,
                retry_at=None if last else self.now + policy.ceiling(used),
                timed_out=timed_out,
            )
        )
        if last:
            self.emit(
                ev.SagaStuck(
                    step=name,
                    reason=f"compensating {name!r} failed {used} times; last: {reason}",
                    attempts=used,
                    at=self.now,
                )
            )

    # --- inputs ---------------------------------------------------------------------

    def reply(self, reply: Reply) -> None:
        state = self.state
        correlation = reply.correlation_id
        pending = state.pending
        if pending is not None and pending.correlation_id == correlation:
            self._answer(pending.step, pending.phase, pending.attempt, reply)
            return
        issued = state.issued.get(correlation)
        if issued is None or correlation in state.answered:
            return  # not ours, or already taken: replies are idempotent
        if (
            reply.succeeded
            and issued.phase == "compensation"
            and state.status in ("compensating", "stuck")
            and state.to_compensate[:1] == (issued.step,)
        ):
            # An earlier attempt of the compensation under way did succeed: it ran
            # under the key of every attempt, so the compensation is done.
            self.emit(
                ev.SagaCompensationSucceeded(
                    step=issued.step, correlation_id=correlation, at=self.now
                )
            )
            self.compensate()
            return
        undo = (
            reply.succeeded
            and issued.phase == "action"
            and state.status != "aborted"
            and self._compensates_late_success(issued.step)
        )
        reopen = undo and state.status == "compensated"
        self.emit(
            ev.SagaLateReply(
                step=issued.step,
                phase=issued.phase,
                correlation_id=correlation,
                succeeded=reply.succeeded,
                at=self.now,
                result=self._stored(reply.result) if reply.succeeded else None,
                reason=reply.reason,
                compensate=undo,
            )
        )
        if reopen:
            self.compensate()

    def _compensates_late_success(self, name: str) -> bool:
        try:
            return _step(self.saga, name).compensate_late_success
        except LookupError:
            return False

    def _answer(self, name: str, phase: Phase, attempt: int, reply: Reply) -> None:
        correlation = reply.correlation_id
        if phase == "action":
            if reply.succeeded:
                result = self._stored(reply.result)
                self.emit(
                    ev.SagaStepSucceeded(
                        step=name, correlation_id=correlation, result=result, at=self.now
                    )
                )
                self.advance()
            else:
                self.emit(
                    ev.SagaStepFailed(
                        step=name, correlation_id=correlation, reason=reply.reason, at=self.now
                    )
                )
                self.compensate()
        elif reply.succeeded:
            self.emit(
                ev.SagaCompensationSucceeded(step=name, correlation_id=correlation, at=self.now)
            )
            self.compensate()
        else:
            self.compensation_failed(name, attempt, correlation, reply.reason)

    def deadline(self, key: str) -> None:
        state = self.state
        due = state.deadlines().get(key)
        if due is None or self.now < due:
            return  # cancelled, fired already, or early: deadlines are idempotent
        pending = state.pending
        if key == SAGA_DEADLINE or (
            pending is not None and key == timeout_deadline(pending.correlation_id)
        ):
            if pending is None:
                return
            if key == SAGA_DEADLINE:
                allowed = (state.deadline_at or self.now) - state.started_at
                reason = f"the saga's deadline passed ({allowed:g} s after it started)"
            else:
                waited = (pending.timeout_at or self.now) - pending.requested_at
                reason = f"no reply within {waited:g} s"
            if pending.phase == "action":
                self.emit(
                    ev.SagaStepTimedOut(
                        step=pending.step,
                        correlation_id=pending.correlation_id,
                        reason=reason,
                        at=self.now,
                    )
                )
                self.compensate()
            else:
                self.compensation_failed(
                    pending.step, pending.attempt, pending.correlation_id, reason, timed_out=True
                )
            return
        # The only other deadline a state sets: the wait before the next attempt.
        self.request_compensation(state.to_compensate[0])

    def operator_retry(self, retry: Retry) -> None:
        self._must_be_stuck("retried")
        self.emit(ev.SagaRetried(at=self.now, operator=retry.operator, note=retry.note))
        self.request_compensation(self.state.to_compensate[0])

    def operator_abort(self, abort: Abort) -> None:
        self._must_be_stuck("aborted")
        self.emit(ev.SagaAborted(reason=abort.reason, at=self.now, operator=abort.operator))

    def _must_be_stuck(self, what: str) -> None:
        if self.state.status != "stuck":
            raise InvalidSagaInput(
                self.saga.name,
                self.state.saga_id,
                f"only a stuck saga can be {what}; this one is {self.state.status}",
            )

    def _stored(self, result: Any) -> Any:
        try:
            return as_stored(result)
        except TypeError as error:
            raise InvalidSagaInput(
                self.saga.name, self.state.saga_id, f"a reply's result cannot be stored: {error}"
            ) from error

    # --- requests -------------------------------------------------------------------

    def build(
        self, action: Action[Any], name: str, phase: Phase, attempt: int, timeout_at: float | None
    ) -> Request:
        state = self.state
        key = state.key(name, phase)
        common: dict[str, Any] = {
            "saga_type": state.saga_type,
            "saga_id": state.saga_id,
            "step": name,
            "phase": phase,
            "attempt": attempt,
            "idempotency_key": key,
            "correlation_id": correlation_id(key, attempt),
            "timeout_at": timeout_at,
        }
        context = self.saga.context(state.saga_id, state.data, state.results)
        if isinstance(action, Send):
            return SendCommand(service=action.service, command=action.build(context), **common)
        if isinstance(action, Local):
            return RunLocal(command=action.build(context), **common)
        assert isinstance(action, Call)
        return InvokeCall(function=action.function, context=context, **common)
