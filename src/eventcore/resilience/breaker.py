"""``CircuitBreaker``: stop calling a target that keeps failing, and find out when it is back.

The rules (``BreakerPolicy`` holds the numbers):

- **Closed** lets every call through and keeps the outcomes of the last ``window``
  seconds (at most ``max_samples`` of them). After a failure is recorded, it **opens**
  when either the window holds at least ``minimum_calls`` outcomes of which a share of at
  least ``failure_ratio`` failed, or the newest ``consecutive_failures`` outcomes in the
  window all failed (so a quiet target that fails every call opens too).
- **Open** refuses every call at once with ``CircuitOpen`` (nothing is sent), carrying
  the seconds until ``reset_timeout`` has passed since it opened. After that it is
  **half-open**; the change happens when the breaker is next used or looked at
  (``state``, ``stats``), so the breaker runs no timer task.
- **Half-open** lets at most ``half_open_probes`` calls in at a time and refuses the
  rest with ``CircuitOpen``. The first probe that fails opens the circuit again (for a
  new ``reset_timeout``); ``half_open_probes`` successful probes close it, with an empty
  window.
- **What counts.** A call that returns is a success. A call that raises an ``Exception``
  is a failure unless its type is in ``ignore`` or ``counts_as_failure`` says no (the
  caller's own mistakes, such as a refused command, say nothing about the target's
  health); such a call counts as neither. Cancellation (the caller gave up) and other
  ``BaseException``\\ s count as neither too. A call past ``call_timeout`` is cancelled,
  counts as a failure and raises ``CallTimeout``.
- **A call counts only in the state it was let in under.** A call admitted while closed
  that fails after the circuit opened, or a probe that finishes after another probe
  already reopened or closed the circuit, changes nothing.
- A probe's slot is given back however the call ends: success, failure, an ignored
  error, cancellation or timeout.

Every change of state is told to the listeners (sync callables taking a
``StateChange``); a listener that raises is logged and never disturbs the breaker. Time
comes from ``clock`` (monotonic seconds; inject a fake one in tests); only
``call_timeout`` uses the event loop's clock, as ``asyncio.timeout`` does.

Why not a library: ``purgatory`` 3.0.1 and ``aiobreaker`` 1.2.0 both count consecutive
failures only (a success resets them; no rolling window), let every caller through
when half-open, and read the wall clock directly (no clock to inject); so this breaker
is our own.

One event loop drives a breaker; it is not thread-safe, and needs no lock: every state
change happens between two awaits.
"""

from __future__ import annotations

import asyncio
import enum
import math
import time
from collections.abc import Awaitable, Callable, Iterable
from types import TracebackType
from typing import ParamSpec, TypeVar

import msgspec

from eventcore.errors import CallTimeout, CircuitOpen, InvalidInput
from eventcore.resilience._notify import notify
from eventcore.resilience._window import Outcomes
from eventcore.resilience.breaker_policy import BreakerPolicy

__all__ = [
    "BreakerState",
    "BreakerStats",
    "CircuitBreaker",
    "StateChange",
    "StateListener",
]

P = ParamSpec("P")
T = TypeVar("T")


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


class StateChange(msgspec.Struct, frozen=True, kw_only=True):
    """The breaker of ``target`` went from ``old`` to ``new`` at ``at`` (its clock)."""

    target: str
    old: BreakerState
    new: BreakerState
    at: float


StateListener = Callable[[StateChange], None]


class BreakerStats(msgspec.Struct, frozen=True, kw_only=True):
    """What a breaker knows now: its state, the window's counts (closed only), the probes
    in flight (half-open only), and the seconds until an open circuit lets probes in."""

    state: BreakerState
    calls: int
    failures: int
    consecutive_failures: int
    probes_in_flight: int
    retry_after: float


class _Permit:
    """One admitted call: the state period it was let in under, and whether it holds a
    probe slot."""

    __slots__ = ("epoch", "probe", "settled")

    def __init__(self, epoch: int, *, probe: bool) -> None:
        self.epoch = epoch
        self.probe = probe
        self.settled = False


class CircuitBreaker:
    """A circuit breaker for one ``target`` (a service name, a host, anything named).

    Use it as ``async with breaker: ...`` or ``await breaker.call(fn, *args)``, or
    ``async with breaker.guard(timeout=s): ...`` for one call with its own time limit.
    The rules are in this module's docstring.
    """

    def __init__(
        self,
        target: str,
        policy: BreakerPolicy | None = None,
        *,
        ignore: tuple[type[Exception], ...] = (),
        counts_as_failure: Callable[[Exception], bool] | None = None,
        clock: Callable[[], float] = time.monotonic,
        listeners: Iterable[StateListener] = (),
    ) -> None:
        self.target = target
        self.policy = policy if policy is not None else BreakerPolicy()
        self._ignore = ignore
        self._counts_as_failure = counts_as_failure
        self._clock = clock
        self._listeners: list[StateListener] = list(listeners)
        self._state = BreakerState.CLOSED
        # Grows at every change of state: a permit of another epoch no longer counts.
        self._epoch = 0
        self._outcomes = Outcomes(self.policy.window, self.policy.max_samples)
        self._opened_at = 0.0
        self._probes_in_flight = 0
        self._probe_successes = 0
        # The guards entered through ``async with breaker``, by task (calls may nest).
        self._entered: dict[object, list[_Guard]] = {}

    def __repr__(self) -> str:
        return f"CircuitBreaker({self.target!r}, state={self._state.value})"

    # --- looking ------------------------------------------------------------------------

    @property
    def state(self) -> BreakerState:
        self._advance(self._clock())
        return self._state

    def stats(self) -> BreakerStats:
        now = self._clock()
        self._advance(now)
        self._outcomes.expire(now)
        closed = self._state is BreakerState.CLOSED
        return BreakerStats(
            state=self._state,
            calls=self._outcomes.calls if closed else 0,
            failures=self._outcomes.failures if closed else 0,
            consecutive_failures=self._outcomes.consecutive_failures if closed else 0,
            probes_in_flight=self._probes_in_flight,
            retry_after=self._retry_after(now),
        )

    def add_listener(self, listener: StateListener) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: StateListener) -> None:
        self._listeners.remove(listener)

    # --- calling ------------------------------------------------------------------------

    def guard(self, *, timeout: float | None = None) -> _Guard:
        """One call's guard: ``async with breaker.guard(): ...``. ``timeout`` replaces the
        policy's ``call_timeout`` for this call (the shorter of the two when both exist)."""
        limit = self.policy.call_timeout
        if timeout is not None:
            if not (math.isfinite(timeout) and timeout > 0):
                raise InvalidInput(f"timeout must be a positive number of seconds, got {timeout}")
            limit = timeout if limit is None else min(limit, timeout)
        return _Guard(self, limit)

    async def call(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """``await fn(*args, **kwargs)`` through the breaker; ``fn`` is not called at all
        when the circuit refuses."""
        async with self.guard():
            return await fn(*args, **kwargs)

    async def __aenter__(self) -> CircuitBreaker:
        guard = self.guard()
        await guard.__aenter__()
        self._entered.setdefault(asyncio.current_task(), []).append(guard)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        task = asyncio.current_task()
        guards = self._entered[task]
        guard = guards.pop()
        if not guards:
            del self._entered[task]
        await guard.__aexit__(exc_type, exc, tb)

    # --- the state machine --------------------------------------------------------------

    def _admit(self) -> _Permit:
        now = self._clock()
        self._advance(now)
        if self._state is BreakerState.CLOSED:
            return _Permit(self._epoch, probe=False)
        if (
            self._state is BreakerState.HALF_OPEN
            and self._probes_in_flight < self.policy.half_open_probes
        ):
            self._probes_in_flight += 1
            return _Permit(self._epoch, probe=True)
        raise CircuitOpen(self.target, self._retry_after(now), self._state.value)

    def _settle(self, permit: _Permit, error: BaseException | None, *, counts: bool = True) -> None:
        """Count how an admitted call ended (``error`` None: it returned), or with
        ``counts=False`` only give its probe slot back."""
        if permit.settled:
            return
        permit.settled = True
        current = permit.epoch == self._epoch
        if permit.probe and current:
            self._probes_in_flight -= 1
        failed = self._failed(error) if counts else None
        if failed is None or not current:
            return
        now = self._clock()
        if self._state is BreakerState.CLOSED:
            self._outcomes.record(now, failed=failed)
            if failed and self._tripped():
                self._open(now)
        elif failed:
            self._open(now)
        else:
            self._probe_successes += 1
            if self._probe_successes >= self.policy.half_open_probes:
                self._change(BreakerState.CLOSED, now)

    def _failed(self, error: BaseException | None) -> bool | None:
        """True: a failure; False: a success; None: counts as neither."""
        if error is None:
            return False
        if not isinstance(error, Exception) or isinstance(error, self._ignore):
            return None
        if self._counts_as_failure is not None and not self._counts_as_failure(error):
            return None
        return True

    def _tripped(self) -> bool:
        outcomes, policy = self._outcomes, self.policy
        if outcomes.consecutive_failures >= policy.consecutive_failures:
            return True
        return (
            outcomes.calls >= policy.minimum_calls
            and outcomes.failures >= policy.failure_ratio * outcomes.calls
        )

    def _advance(self, now: float) -> None:
        if self._state is BreakerState.OPEN and now >= self._opened_at + self.policy.reset_timeout:
            self._change(BreakerState.HALF_OPEN, now)

    def _retry_after(self, now: float) -> float:
        if self._state is BreakerState.OPEN:
            return max(0.0, self._opened_at + self.policy.reset_timeout - now)
        return 0.0

    def _open(self, now: float) -> None:
        self._opened_at = now
        self._change(BreakerState.OPEN, now)

    def _change(self, new: BreakerState, now: float) -> None:
        old = self._state
        self._state = new
        self._epoch += 1
        self._outcomes.clear()
        self._probes_in_flight = 0
        self._probe_successes = 0
        notify(self._listeners, StateChange(target=self.target, old=old, new=new, at=now))


class _Guard:
    """The guard of one call through a breaker; usable once."""

    __slots__ = ("_breaker", "_permit", "_seconds", "_timeout")

    def __init__(self, breaker: CircuitBreaker, seconds: float | None) -> None:
        self._breaker = breaker
        self._seconds = seconds
        self._permit: _Permit | None = None
        self._timeout: asyncio.Timeout | None = None

    async def __aenter__(self) -> None:
        if self._permit is not None:
            raise RuntimeError("a breaker guard guards one call: make another with guard()")
        # Admission and taking a probe slot happen with no await in between, so no
        # cancellation can fall between them; __aexit__ gives the slot back.
        permit = self._permit = self._breaker._admit()
        if self._seconds is not None:
            try:
                self._timeout = asyncio.timeout(self._seconds)
                await self._timeout.__aenter__()
            except BaseException:
                # Outside a task, say: the call never ran, so it counts as nothing.
                self._breaker._settle(permit, None, counts=False)
                raise

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        permit = self._permit
        if permit is None:
            raise RuntimeError("a breaker guard was exited without being entered")
        outcome = exc
        timed_out: CallTimeout | None = None
        try:
            if self._timeout is not None:
                await self._timeout.__aexit__(exc_type, exc, tb)
        except TimeoutError as expired:
            # Our deadline cancelled the call (asyncio.Timeout turned that into this).
            timed_out = CallTimeout(self._breaker.target, self._seconds or 0.0)
            timed_out.__cause__ = expired
            outcome = timed_out
        finally:
            self._breaker._settle(permit, outcome)
        if timed_out is not None:
            raise timed_out
