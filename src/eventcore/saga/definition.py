"""Saga definitions: ordered steps, each an action and the compensation that undoes it.

A ``Saga`` is declared once, with plain objects: its name, the type of its start data,
its steps in order, and optionally a deadline, the retry policy of its
compensations and the events that start it. Everything is checked when it is declared;
a definition that cannot run raises ``InvalidSaga`` there, not when a saga meets it.

An action (or compensation) is one of three kinds:

- ``Send``: a command sent to another service over the bus;
- ``Local``: a command the saga's own service runs;
- ``Call``: an async function (an HTTP call, say) given an idempotency key.

Each gets a ``SagaContext``: the start data and the results of the steps done so far,
typed (``context.result(reserve)`` is the ``Reserved`` the reserve step returned).
Builders must be pure functions of their context: a saga owner that restarts builds
the same request again, and the participant, seeing the same idempotency key, runs it
once.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Final, Generic, TypeVar

import msgspec

from eventcore.errors import InvalidSaga, InvalidSagaInput
from eventcore.events import Event
from eventcore.retry import RetryPolicy
from eventcore.saga.inputs import Start, as_stored
from eventcore.saga.keys import check_name

__all__ = [
    "COMPENSATION_RETRY",
    "DEFAULT_TIMEOUT",
    "Action",
    "Call",
    "Local",
    "Saga",
    "SagaContext",
    "Send",
    "StartOn",
    "Step",
]

D = TypeVar("D")
R = TypeVar("R")
E = TypeVar("E", bound=Event)

#: How a compensation is retried unless the saga says otherwise: five attempts, waiting
#: 1 s, 2 s, 4 s, 8 s in between (the waits double up to ``max_delay``).
COMPENSATION_RETRY: Final = RetryPolicy(max_attempts=5, initial_delay=1.0, max_delay=60.0)
#: How long a step waits for a reply unless it says otherwise, in seconds.
DEFAULT_TIMEOUT: Final = 30.0


class SagaContext(Generic[D]):
    """What a builder sees: the saga's id, its start data, the results of its steps."""

    __slots__ = ("_results", "data", "saga_id")

    def __init__(self, saga_id: str, data: D, results: Mapping[str, Any]) -> None:
        self.saga_id = saga_id
        self.data = data
        self._results = results

    # Contexts built from the same stream are equal: decide gives equal decisions for
    # equal inputs, a request built again after a restart equals the first.
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SagaContext):
            return NotImplemented
        return (self.saga_id, self.data, self._results) == (
            other.saga_id,
            other.data,
            other._results,
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"SagaContext({self.saga_id!r}, {self.data!r})"

    def result(self, step: Step[Any, R]) -> R:
        """The result ``step`` returned, as its declared type.

        Raises ``KeyError`` when the step has not succeeded: a builder that asks for a
        result it cannot have fails its step (or compensation) with that reason.
        """
        if step.name not in self._results:
            raise KeyError(f"step {step.name!r} has no result yet")
        return msgspec.convert(self._results[step.name], step.result)


class Send(Generic[D]):
    """Send the command ``build(context)`` returns to ``service`` over the bus."""

    __slots__ = ("build", "service")

    def __init__(self, service: str, build: Callable[[SagaContext[D]], object]) -> None:
        self.service = service
        self.build = build


class Local(Generic[D]):
    """Run the command ``build(context)`` returns in the saga's own service.

    The saga worker runs it with its ``Executor`` once per idempotency key, and its
    reply is stored in the same append as the command's events, as a command sent over
    the bus would be answered. ``result(command, events)`` makes the step's result from
    what the command wrote (None when not given); a ``CommandRejected`` is the step's
    failure.
    """

    __slots__ = ("build", "result")

    def __init__(
        self,
        build: Callable[[SagaContext[D]], object],
        *,
        result: Callable[[Any, tuple[Event, ...]], object] | None = None,
    ) -> None:
        self.build = build
        self.result = result


class Call(Generic[D]):
    """Await ``function(context, idempotency_key)``; what it returns is the result.

    The key is the same for every attempt of the same step (or compensation) of the
    same saga: pass it on (an ``Idempotency-Key`` header) so the far side runs it once.
    """

    __slots__ = ("function",)

    def __init__(self, function: Callable[[SagaContext[D], str], Awaitable[object]]) -> None:
        self.function = function


Action = Send[D] | Local[D] | Call[D]


class Step(Generic[D, R]):
    """One step of a saga: ``action`` does the work and returns an ``R``;
    ``compensation`` undoes it.

    ``timeout`` (seconds, ``DEFAULT_TIMEOUT`` unless given) bounds the wait for the
    action's reply; a step that times out counts as failed. There is no unbounded wait:
    a request or reply lost on the way would leave the saga waiting where no operator
    sees it. ``compensation_timeout`` bounds each attempt of the compensation
    (``timeout`` when not given); one that times out is tried again like one that
    failed. A reply that comes after its timeout is recorded and changes nothing —
    unless ``compensate_late_success`` is set: then a late reply saying the action
    happened gets the action compensated.
    """

    __slots__ = (
        "action",
        "compensate_late_success",
        "compensation",
        "compensation_timeout",
        "name",
        "result",
        "timeout",
    )

    def __init__(
        self,
        name: str,
        *,
        action: Action[D],
        result: type[R],
        compensation: Action[D] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        compensation_timeout: float | None = None,
        compensate_late_success: bool = False,
    ) -> None:
        self.name = name
        self.action = action
        self.result = result
        self.compensation = compensation
        self.timeout = timeout
        self.compensation_timeout: float = (
            compensation_timeout if compensation_timeout is not None else timeout
        )
        self.compensate_late_success = compensate_late_success

    def __repr__(self) -> str:
        return f"Step({self.name!r})"


class StartOn(Generic[E, D]):
    """Start a saga when an ``event_type`` event arrives: ``saga_id(event)`` names the
    business process (a second event naming it starts nothing), ``data(event)`` is the
    start data."""

    __slots__ = ("data", "event_type", "saga_id")

    def __init__(
        self,
        event_type: type[E],
        *,
        saga_id: Callable[[E], str],
        data: Callable[[E], D],
    ) -> None:
        self.event_type = event_type
        self.saga_id = saga_id
        self.data = data


class Saga(Generic[D]):
    """A saga type: its steps run in order; when one fails or times out, the steps that
    completed are compensated in reverse order.

    ``deadline`` (seconds from the start) bounds the whole forward run: when it passes,
    the step in flight counts as timed out. ``compensation_retry`` says how often each
    compensation is tried (``max_attempts``) and how long to wait in between
    (``RetryPolicy.ceiling``: doubling from ``initial_delay`` up to ``max_delay``);
    past that the saga is ``stuck`` until an operator retries or aborts it.
    """

    __slots__ = ("_by_name", "compensation_retry", "data", "deadline", "name", "start_on", "steps")

    def __init__(
        self,
        name: str,
        *,
        data: type[D],
        steps: Sequence[Step[D, Any]],
        deadline: float | None = None,
        compensation_retry: RetryPolicy = COMPENSATION_RETRY,
        start_on: Sequence[StartOn[Any, D]] = (),
    ) -> None:
        self.name = name
        self.data = data
        self.steps = tuple(steps)
        self.deadline = deadline
        self.compensation_retry = compensation_retry
        self.start_on = tuple(start_on)
        self._check()
        self._by_name = {step.name: step for step in self.steps}

    def __repr__(self) -> str:
        return f"Saga({self.name!r}, steps={[step.name for step in self.steps]})"

    def step(self, name: str) -> Step[D, Any]:
        """The step called ``name``; ``KeyError`` when there is none."""
        return self._by_name[name]

    def start(self, saga_id: str, data: D) -> Start:
        """The input that starts saga ``saga_id`` with ``data``.

        Raises ``InvalidSagaInput`` when the id cannot name a saga or the data is not a
        ``D`` that survives being stored (JSON and back).
        """
        problem = check_name(saga_id)
        if problem is not None:
            raise InvalidSagaInput(self.name, str(saga_id), f"the saga id {problem}")
        if not isinstance(data, self.data):
            raise InvalidSagaInput(
                self.name,
                saga_id,
                f"the start data must be a {self.data.__name__}, not {type(data).__name__}",
            )
        try:
            stored = as_stored(data)
            msgspec.convert(stored, self.data)
        except (TypeError, msgspec.ValidationError) as error:
            raise InvalidSagaInput(
                self.name, saga_id, f"the start data cannot be stored: {error}"
            ) from error
        return Start(saga_type=self.name, saga_id=saga_id, data=stored)

    def start_from(self, event: Event) -> Start | None:
        """The start that ``event`` triggers, or None when this saga does not start on
        its type."""
        for trigger in self.start_on:
            if isinstance(event, trigger.event_type):
                return self.start(trigger.saga_id(event), trigger.data(event))
        return None

    def context(self, saga_id: str, data: Any, results: Mapping[str, Any]) -> SagaContext[D]:
        """The context builders see, from the stored start data and results."""
        return SagaContext(saga_id, msgspec.convert(data, self.data), results)

    # --- validation ---------------------------------------------------------------------

    def _check(self) -> None:
        problem = check_name(self.name)
        if problem is not None:
            raise InvalidSaga(str(self.name), f"its name {problem}")
        if not isinstance(self.data, type):
            raise InvalidSaga(self.name, f"data must be a type, not {self.data!r}")
        if not self.steps:
            raise InvalidSaga(self.name, "it has no steps")
        if not isinstance(self.compensation_retry, RetryPolicy):
            raise InvalidSaga(self.name, "compensation_retry must be a RetryPolicy")
        _check_seconds(self.name, "the saga's deadline", self.deadline)
        seen: set[str] = set()
        for index, step in enumerate(self.steps):
            if not isinstance(step, Step):
                raise InvalidSaga(self.name, f"step {index + 1} is {step!r}, not a Step")
            self._check_step(step, last=index == len(self.steps) - 1)
            if step.name in seen:
                raise InvalidSaga(self.name, f"two steps are called {step.name!r}")
            seen.add(step.name)
        for trigger in self.start_on:
            if not (isinstance(trigger, StartOn) and issubclass(trigger.event_type, Event)):
                raise InvalidSaga(self.name, f"{trigger!r} is not a StartOn of an Event type")

    def _check_step(self, step: Step[Any, Any], *, last: bool) -> None:
        problem = check_name(step.name)
        if problem is not None:
            raise InvalidSaga(self.name, f"a step's name {problem}")
        where = f"step {step.name!r}"
        _check_action(self.name, f"{where}'s action", step.action)
        if step.compensation is None:
            # A later step's failure must undo this one; only the last step's success
            # ends the saga with nothing after it to fail.
            if not last:
                raise InvalidSaga(self.name, f"{where} has no compensation, and steps follow it")
            if step.compensate_late_success:
                raise InvalidSaga(
                    self.name, f"{where} compensates a late success, but has no compensation"
                )
        else:
            _check_action(self.name, f"{where}'s compensation", step.compensation)
        if not isinstance(step.result, type):
            raise InvalidSaga(self.name, f"{where}'s result must be a type")
        _check_seconds(self.name, f"{where}'s timeout", step.timeout, required=True)
        _check_seconds(
            self.name, f"{where}'s compensation timeout", step.compensation_timeout, required=True
        )


def _check_action(saga: str, what: str, action: object) -> None:
    if isinstance(action, Send):
        problem = check_name(action.service)
        if problem is not None:
            raise InvalidSaga(saga, f"{what} sends to a service whose name {problem}")
        if not callable(action.build):
            raise InvalidSaga(saga, f"{what} has a builder that is not callable")
    elif isinstance(action, Local):
        if not callable(action.build):
            raise InvalidSaga(saga, f"{what} has a builder that is not callable")
        if action.result is not None and not callable(action.result):
            raise InvalidSaga(saga, f"{what} makes its result with something not callable")
    elif isinstance(action, Call):
        if not callable(action.function):
            raise InvalidSaga(saga, f"{what} calls something that is not callable")
    else:
        raise InvalidSaga(saga, f"{what} is {action!r}, not a Send, Local or Call")


def _check_seconds(saga: str, what: str, seconds: float | None, *, required: bool = False) -> None:
    if seconds is None and not required:
        return
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, int | float)
        or not math.isfinite(seconds)
        or seconds <= 0
    ):
        raise InvalidSaga(saga, f"{what} must be a positive number of seconds, not {seconds!r}")
