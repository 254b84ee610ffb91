"""The breaker against a reference model: random calls started and ended in any order,
with any outcome, while a fake clock moves, under random policies.

The model is the rules of ``eventcore.resilience.breaker`` written as plainly as
possible: a list of every outcome since the circuit last changed state, filtered by
age when it is judged. After every step the breaker's state, counts, probe slots,
``retry_after`` and the changes it told its listener equal the model's.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    rule,
)

from eventcore.errors import CircuitOpen
from eventcore.resilience import BreakerPolicy, BreakerState, CircuitBreaker, StateChange
from tests.resilience.clock import FakeClock

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half-open"


class Refused(Exception):
    """An error the breaker is told to ignore (the caller's fault)."""


@dataclass
class ModelCall:
    period: int
    probe: bool


@dataclass
class Model:
    policy: BreakerPolicy
    state: str = CLOSED
    # Every (time, failed) recorded since the last change of state.
    recorded: list[tuple[float, bool]] = field(default_factory=list)
    opened_at: float = 0.0
    probes: int = 0
    successes: int = 0
    period: int = 0
    changes: list[tuple[str, str, float]] = field(default_factory=list)

    def window(self, now: float) -> list[bool]:
        young = [failed for at, failed in self.recorded if at > now - self.policy.window]
        return young[-self.policy.max_samples :]

    def look(self, now: float) -> None:
        if self.state == OPEN and now >= self.opened_at + self.policy.reset_timeout:
            self.change(HALF_OPEN, now)

    def change(self, new: str, now: float) -> None:
        self.changes.append((self.state, new, now))
        self.state = new
        self.period += 1
        self.recorded = []
        self.probes = 0
        self.successes = 0

    def retry_after(self, now: float) -> float:
        if self.state == OPEN:
            return max(0.0, self.opened_at + self.policy.reset_timeout - now)
        return 0.0

    def admit(self, now: float) -> ModelCall | None:
        self.look(now)
        if self.state == CLOSED:
            return ModelCall(self.period, probe=False)
        if self.state == HALF_OPEN and self.probes < self.policy.half_open_probes:
            self.probes += 1
            return ModelCall(self.period, probe=True)
        return None

    def end(self, call: ModelCall, outcome: str, now: float) -> None:
        same_period = call.period == self.period
        if call.probe and same_period:
            self.probes -= 1
        if outcome in ("ignored", "cancelled") or not same_period:
            return
        failed = outcome == "failure"
        if self.state == CLOSED:
            self.recorded.append((now, failed))
            if failed and self.tripped(now):
                self.opened_at = now
                self.change(OPEN, now)
        elif failed:
            self.opened_at = now
            self.change(OPEN, now)
        else:
            self.successes += 1
            if self.successes == self.policy.half_open_probes:
                self.change(CLOSED, now)

    def tripped(self, now: float) -> bool:
        window = self.window(now)
        run = 0
        for failed in reversed(window):
            if not failed:
                break
            run += 1
        if run >= self.policy.consecutive_failures:
            return True
        return (
            len(window) >= self.policy.minimum_calls
            and sum(window) / len(window) >= self.policy.failure_ratio
        )


@st.composite
def policies(draw: st.DrawFn) -> BreakerPolicy:
    minimum_calls = draw(st.integers(1, 5))
    consecutive = draw(st.integers(1, 5))
    return BreakerPolicy(
        window=draw(st.sampled_from([2.0, 5.0, 10.0])),
        minimum_calls=minimum_calls,
        # Ratios a float holds exactly, so that the model's division and the breaker's
        # multiplication agree at the boundary.
        failure_ratio=draw(st.sampled_from([0.25, 0.5, 0.75, 1.0])),
        consecutive_failures=consecutive,
        max_samples=max(minimum_calls, consecutive) + draw(st.integers(0, 3)),
        reset_timeout=draw(st.sampled_from([0.0, 1.0, 3.0, 7.0])),
        half_open_probes=draw(st.integers(1, 3)),
    )


@dataclass
class Running:
    guard: object
    model: ModelCall


OUTCOMES = {
    "success": None,
    "failure": RuntimeError("the target failed"),
    "ignored": Refused("the caller's own mistake"),
    "cancelled": asyncio.CancelledError(),
}


class BreakerMachine(RuleBasedStateMachine):
    calls = Bundle("calls")

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.clock = FakeClock()
        self.told: list[tuple[str, str, float]] = []

    def teardown(self) -> None:
        self.loop.close()

    def _heard(self, change: StateChange) -> None:
        self.told.append((change.old.value, change.new.value, change.at))

    @initialize(policy=policies())
    def make(self, policy: BreakerPolicy) -> None:
        self.model = Model(policy)
        self.breaker = CircuitBreaker(
            "payments", policy, ignore=(Refused,), clock=self.clock, listeners=[self._heard]
        )

    @rule(seconds=st.sampled_from([0.0, 0.25, 1.0, 2.0, 3.0, 7.0]))
    def time_passes(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule(target=calls)
    def start(self) -> object:
        expected = self.model.admit(self.clock.now)
        guard = self.breaker.guard()
        refused: CircuitOpen | None = None
        try:
            self.loop.run_until_complete(guard.__aenter__())
        except CircuitOpen as error:
            refused = error
        if refused is not None:
            assert expected is None, "the breaker refused a call the model let in"
            assert refused.target == "payments"
            assert refused.state == self.model.state
            assert refused.retry_after == pytest.approx(self.model.retry_after(self.clock.now))
            return None
        assert expected is not None, f"the breaker let in a call while {self.model.state}"
        return Running(guard, expected)

    @rule(call=consumes(calls), outcome=st.sampled_from(sorted(OUTCOMES)))
    def end(self, call: Running | None, outcome: str) -> None:
        if call is None:
            return
        error = OUTCOMES[outcome]
        self.model.end(call.model, outcome, self.clock.now)
        exit_ = call.guard.__aexit__(  # type: ignore[attr-defined]
            None if error is None else type(error), error, None
        )
        self.loop.run_until_complete(exit_)

    @invariant()
    def agrees_with_the_model(self) -> None:
        if not hasattr(self, "model"):
            return
        now = self.clock.now
        self.model.look(now)
        stats = self.breaker.stats()
        assert stats.state is BreakerState(self.model.state)
        window = self.model.window(now) if self.model.state == CLOSED else []
        run = 0
        for failed in reversed(window):
            if not failed:
                break
            run += 1
        assert (stats.calls, stats.failures, stats.consecutive_failures) == (
            len(window),
            sum(window),
            run,
        )
        assert stats.probes_in_flight == self.model.probes
        assert stats.retry_after == pytest.approx(self.model.retry_after(now))
        assert self.told == self.model.changes


BreakerMachine.TestCase.settings = settings(
    max_examples=300,
    stateful_step_count=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
# 300 runs of up to 60 steps: about 20 s on an idle machine, several times that on a
# loaded one, where the suite's 60 s limit cut it short mid-example.
BreakerMachine.TestCase.pytestmark = [pytest.mark.timeout(300)]
test_the_breaker_follows_its_rules = BreakerMachine.TestCase
