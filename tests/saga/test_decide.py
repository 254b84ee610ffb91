"""Each transition of a saga: what ``decide`` answers to every input in every status.

The stream a ``Run`` keeps is re-folded after every input, so each test also checks
that the events alone give back the state the saga decided on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from eventcore.errors import InvalidSagaInput
from eventcore.saga import (
    Abort,
    Call,
    DeadlineFired,
    InvokeCall,
    Local,
    Reply,
    Retry,
    RunLocal,
    Saga,
    SagaCompensationFailed,
    SagaContext,
    SagaLateReply,
    SagaStuck,
    Send,
    SendCommand,
    Step,
    decide,
    outstanding,
)
from tests.saga.order import (
    ACTIONS,
    COMPENSATIONS,
    ORDER,
    RETRY,
    STEPS,
    BookShipment,
    Order,
    RefundPayment,
    ReleaseStock,
    Reserved,
    ReserveStock,
    Run,
    order_saga,
)


def sent(run: Run) -> list[tuple[str, str, type]]:
    """(step, phase, command type) of every request the run sent, in order."""
    return [
        (request.step, request.phase, type(request.command))
        for decision in run.decisions
        for request in decision.requests
        if isinstance(request, SendCommand | RunLocal)
    ]


def fire(run: Run, prefix: str) -> None:
    """Move the clock to the one deadline set whose key starts with ``prefix``; fire it."""
    deadlines = run.saga_state.deadlines()
    (key,) = [key for key in deadlines if key.startswith(prefix)]
    run.now = max(run.now, deadlines[key])
    run.feed(DeadlineFired(key=key))


# --- forward ---------------------------------------------------------------------------


def test_the_steps_run_in_order_and_the_saga_completes() -> None:
    run = Run(order_saga())

    run.start()
    run.succeed()
    run.succeed()
    last = run.succeed()

    assert run.kinds() == [
        "SagaStarted",
        "SagaStepRequested",
        "SagaStepSucceeded",
        "SagaStepRequested",
        "SagaStepSucceeded",
        "SagaStepRequested",
        "SagaStepSucceeded",
        "SagaCompleted",
    ]
    assert sent(run) == [(step, "action", ACTIONS[step]) for step in STEPS]
    assert run.saga_state.status == "completed"
    assert run.saga_state.deadlines() == {}
    assert last.cancel_deadlines
    assert not last.set_deadlines


def test_a_step_s_request_is_built_from_the_start_data_and_earlier_results() -> None:
    run = Run(order_saga())
    (reserve_request,) = run.start().requests
    run.succeed({"reservation_id": "r-9"})
    (ship_request,) = run.succeed({"payment_id": "p-9"}).requests

    assert isinstance(reserve_request, SendCommand)
    assert isinstance(ship_request, SendCommand)
    assert (reserve_request.service, reserve_request.command) == (
        "inventory",
        ReserveStock(order_id="o-1", items=("book", "pen")),
    )
    assert (ship_request.service, ship_request.command) == (
        "shipping",
        BookShipment(order_id="o-1", reservation_id="r-9"),
    )


def test_a_second_start_of_the_same_saga_changes_nothing() -> None:
    run = Run(order_saga())
    run.start()

    again = run.start()

    assert (again.events, again.requests, again.set_deadlines) == ((), (), {})
    assert not again.changed


def test_a_step_s_timeout_and_the_saga_s_deadline_are_set_with_each_request() -> None:
    run = Run(order_saga(timeout=5.0, deadline=60.0), now=100.0)

    started = run.start()
    run.now = 103.0
    charged = run.succeed()

    pending = run.pending
    assert dict(started.set_deadlines) == {
        "deadline": 160.0,
        f"timeout:{started.requests[0].correlation_id}": 105.0,
    }
    assert dict(charged.set_deadlines) == {f"timeout:{pending.correlation_id}": 108.0}
    assert charged.cancel_deadlines == (f"timeout:{started.requests[0].correlation_id}",)


# --- failure and compensation ------------------------------------------------------------

FAILURES: dict[str, Callable[[Run], object]] = {
    "rejected": lambda run: run.reject("out of stock"),
    "timed out": lambda run: fire(run, "timeout:"),
    "past the saga's deadline": lambda run: fire(run, "deadline"),
}


@pytest.mark.parametrize("how", list(FAILURES))
@pytest.mark.parametrize("failing", range(len(STEPS)), ids=lambda index: STEPS[index])
def test_a_failed_step_compensates_exactly_the_completed_steps_in_reverse_order(
    failing: int, how: str
) -> None:
    run = Run(order_saga(timeout=5.0, deadline=30.0))
    run.start()
    for _ in range(failing):
        run.now += 1
        run.succeed()

    FAILURES[how](run)
    while run.saga_state.status == "compensating":
        run.succeed()

    completed = list(STEPS[:failing])
    assert sent(run) == [
        *[(step, "action", ACTIONS[step]) for step in STEPS[: failing + 1]],
        *[(step, "compensation", COMPENSATIONS[step]) for step in reversed(completed)],
    ]
    assert run.saga_state.status == "compensated"
    assert run.saga_state.compensated == tuple(reversed(completed))
    assert run.saga_state.deadlines() == {}


def test_a_compensation_undoes_with_the_result_of_its_own_step() -> None:
    run = Run(order_saga())
    run.start()
    run.succeed({"reservation_id": "r-7"})
    run.succeed({"payment_id": "p-7"})
    refund = run.reject("no truck")
    release = run.succeed()

    assert [request.command for request in (*refund.requests, *release.requests)] == [  # type: ignore[attr-defined]
        RefundPayment(payment_id="p-7"),
        ReleaseStock(reservation_id="r-7"),
    ]


def test_a_failure_at_the_first_step_ends_compensated_with_nothing_to_undo() -> None:
    run = Run(order_saga())
    run.start()

    failed = run.reject("out of stock")

    assert run.kinds(failed) == ["SagaStepFailed", "SagaCompensated"]
    assert failed.requests == ()


def test_a_compensation_that_fails_is_retried_with_backoff_until_it_succeeds() -> None:
    run = Run(order_saga(), now=0.0)
    run.start()
    run.succeed()
    run.reject("card declined")

    waits = []
    for _ in range(2):
        failed_at = run.now
        run.reject("inventory is down")
        waits.append(run.saga_state.retry_at - failed_at)  # type: ignore[operator]
        fire(run, "retry:")
    run.succeed()

    assert waits == [1.0, 2.0]
    requests = [request for decision in run.decisions for request in decision.requests]
    releases = [request for request in requests if request.phase == "compensation"]
    assert [request.attempt for request in releases] == [1, 2, 3]
    assert len({request.idempotency_key for request in releases}) == 1
    assert len({request.correlation_id for request in releases}) == 3
    assert run.saga_state.status == "compensated"


def exhaust(run: Run, failing_step: int = 1) -> None:
    """Run the order saga into ``stuck``: the reserve compensation always fails."""
    run.start()
    for _ in range(failing_step):
        run.succeed()
    run.reject("card declined")
    for _ in range(2):
        run.reject("inventory is down")
        fire(run, "retry:")
    run.reject("inventory is still down")


def test_a_compensation_that_keeps_failing_leaves_the_saga_stuck_after_the_last_attempt() -> None:
    run = Run(order_saga())

    exhaust(run)

    stuck = run.events[-1]
    assert isinstance(stuck, SagaStuck)
    assert (stuck.step, stuck.attempts) == ("reserve", 3)
    assert "inventory is still down" in stuck.reason
    assert run.saga_state.status == "stuck"
    assert run.saga_state.stuck_reason == stuck.reason
    assert run.saga_state.deadlines() == {}
    assert run.kinds().count("SagaCompensationRequested") == 3


def test_an_operator_s_retry_gives_a_stuck_saga_a_fresh_set_of_attempts() -> None:
    run = Run(order_saga())
    exhaust(run)

    retried = run.feed(Retry(operator="ana", note="inventory fixed"))
    run.reject("one more hiccup")
    fire(run, "retry:")
    run.succeed()

    assert run.kinds(retried) == ["SagaRetried", "SagaCompensationRequested"]
    assert retried.requests[0].attempt == 4
    assert run.saga_state.status == "compensated"


def test_an_operator_s_abort_ends_a_stuck_saga_as_aborted() -> None:
    run = Run(order_saga())
    exhaust(run)

    aborted = run.feed(Abort(reason="released by hand", operator="ana"))

    assert run.kinds(aborted) == ["SagaAborted"]
    assert aborted.requests == ()
    assert run.saga_state.status == "aborted"
    assert run.saga_state.to_compensate == ("reserve",)


def completed(run: Run) -> None:
    run.start()
    for _ in STEPS:
        run.succeed()


def compensated(run: Run) -> None:
    run.start()
    run.reject()


def aborted(run: Run) -> None:
    exhaust(run)
    run.feed(Abort(reason="by hand"))


STATUSES: dict[str, Callable[[Run], Any]] = {
    "running": lambda run: run.start(),
    "compensating": lambda run: (run.start(), run.succeed(), run.reject()),
    "completed": completed,
    "compensated": compensated,
    "aborted": aborted,
}


@pytest.mark.parametrize("operation", [Retry(), Abort(reason="x")], ids=["retry", "abort"])
@pytest.mark.parametrize("status", list(STATUSES))
def test_an_operator_action_on_a_saga_that_is_not_stuck_is_refused(
    status: str, operation: Retry | Abort
) -> None:
    run = Run(order_saga())
    STATUSES[status](run)

    with pytest.raises(InvalidSagaInput, match=f"only a stuck saga .*this one is {status}"):
        run.feed(operation)
    assert run.saga_state.status == status


@pytest.mark.parametrize("operation", [Retry(), Abort(reason="x")], ids=["retry", "abort"])
def test_an_operator_action_on_a_saga_that_never_started_is_refused(
    operation: Retry | Abort,
) -> None:
    with pytest.raises(InvalidSagaInput, match="it has not started"):
        decide(order_saga(), None, operation, 0.0)


# --- timeouts and late replies -------------------------------------------------------------


def test_a_compensation_attempt_that_times_out_is_retried_like_a_failed_one() -> None:
    run = Run(order_saga(timeout=5.0))
    run.start()
    run.succeed()
    run.reject()

    fire(run, "timeout:")
    failed = run.events[-1]
    fire(run, "retry:")

    assert isinstance(failed, SagaCompensationFailed)
    assert run.kinds()[-2:] == ["SagaCompensationFailed", "SagaCompensationRequested"]
    assert failed.timed_out
    assert "no reply within 5 s" in failed.reason
    assert run.pending.attempt == 2


def test_a_late_success_of_an_earlier_compensation_attempt_completes_the_compensation() -> None:
    run = Run(order_saga(timeout=5.0))
    run.start()
    run.succeed()
    run.reject()
    first = run.pending.correlation_id
    fire(run, "timeout:")
    fire(run, "retry:")
    second = run.pending.correlation_id

    run.feed(Reply.success(first))
    after = run.feed(Reply.success(second))

    assert run.saga_state.status == "compensated"
    assert run.kinds(after) == ["SagaLateReply"]
    assert run.saga_state.compensated == ("reserve",)


@pytest.mark.parametrize("succeeded", [True, False], ids=["success", "rejection"])
def test_a_late_reply_to_a_timed_out_step_is_recorded_and_changes_nothing(
    succeeded: bool,
) -> None:
    run = Run(order_saga(timeout=5.0))
    run.start()
    run.succeed()
    late = run.pending.correlation_id
    fire(run, "timeout:")
    run.succeed()
    before = run.saga_state

    reply = Reply.success(late, {"payment_id": "p-1"}) if succeeded else Reply.rejection(late, "no")
    recorded = run.feed(reply)
    again = run.feed(reply)

    (event,) = recorded.events
    assert isinstance(event, SagaLateReply)
    assert (event.step, event.succeeded, event.compensate) == ("charge", succeeded, False)
    assert recorded.requests == ()
    assert again.events == ()
    assert run.saga_state.status == before.status == "compensated"


def test_a_late_success_of_a_step_that_asks_is_compensated_after_the_compensation_under_way() -> (
    None
):
    run = Run(order_saga(timeout=5.0, late_success=True))
    run.start()
    run.succeed()
    run.succeed()
    late = run.pending.correlation_id
    fire(run, "timeout:")  # ship timed out: refund the charge

    run.feed(Reply.success(late, {"shipment_id": "s-late"}))
    while run.saga_state.status == "compensating":
        run.succeed()

    assert [step for step, phase, _ in sent(run) if phase == "compensation"] == [
        "charge",
        "ship",
        "reserve",
    ]
    assert run.saga_state.status == "compensated"


def test_a_late_success_after_the_saga_compensated_reopens_it_for_that_step_alone() -> None:
    run = Run(order_saga(timeout=5.0, late_success=True))
    run.start()
    run.succeed()
    late = run.pending.correlation_id
    fire(run, "timeout:")
    run.succeed()
    assert run.saga_state.status == "compensated"

    reopened = run.feed(Reply.success(late, {"payment_id": "p-late"}))
    run.succeed()

    assert run.kinds(reopened) == ["SagaLateReply", "SagaCompensationRequested"]
    assert reopened.requests[0].command == RefundPayment(payment_id="p-late")  # type: ignore[attr-defined]
    assert run.saga_state.status == "compensated"
    assert run.saga_state.compensated == ("reserve", "charge")


def test_a_late_success_to_an_aborted_saga_is_recorded_and_left_to_the_operator() -> None:
    run = Run(order_saga(timeout=5.0, late_success=True))
    run.start()
    run.succeed()
    late = run.pending.correlation_id
    fire(run, "timeout:")
    for _ in range(2):
        run.reject()
        fire(run, "retry:")
    run.reject()
    run.feed(Abort(reason="by hand"))

    recorded = run.feed(Reply.success(late, {"payment_id": "p-late"}))

    assert run.kinds(recorded) == ["SagaLateReply"]
    assert not recorded.events[0].compensate  # type: ignore[union-attr]
    assert run.saga_state.status == "aborted"


# --- inputs that change nothing -----------------------------------------------------------


def test_a_reply_with_an_unknown_correlation_id_changes_nothing() -> None:
    run = Run(order_saga())
    run.start()

    for reply in (Reply.success("nobody.1"), Reply.rejection("nobody.1", "no")):
        assert run.feed(reply).events == ()
    assert run.saga_state.pending is not None


def test_a_duplicate_reply_changes_nothing() -> None:
    run = Run(order_saga())
    run.start()
    first = run.pending.correlation_id
    run.succeed()

    for reply in (Reply.success(first, {"reservation_id": "r-2"}), Reply.rejection(first, "no")):
        assert run.feed(reply).events == ()
    assert run.saga_state.results["reserve"] == {"reservation_id": "r-1"}


def test_a_reply_for_a_saga_that_never_started_changes_nothing() -> None:
    decision = decide(order_saga(), None, Reply.success("x.1"), 0.0)

    assert (decision.state, decision.events) == (None, ())


def test_a_deadline_that_is_early_unknown_or_already_fired_changes_nothing() -> None:
    run = Run(order_saga(timeout=5.0), now=0.0)
    run.start()
    (key,) = run.saga_state.deadlines()

    early = run.feed(DeadlineFired(key=key))
    unknown = run.feed(DeadlineFired(key="timeout:elsewhere.1"))
    run.now = 5.0
    run.feed(DeadlineFired(key=key))
    twice = run.feed(DeadlineFired(key=key))

    assert early.events == unknown.events == twice.events == ()
    assert run.kinds().count("SagaStepTimedOut") == 1


def test_the_saga_s_deadline_does_not_interrupt_a_compensation() -> None:
    run = Run(order_saga(deadline=10.0), now=0.0)
    run.start()
    run.succeed()
    run.reject()
    run.now = 20.0

    assert run.feed(DeadlineFired(key="deadline")).events == ()
    assert run.pending.phase == "compensation"


# --- builders and kinds of action ---------------------------------------------------------


def failing_builder(context: SagaContext[Order]) -> ReserveStock:
    raise RuntimeError("builder bug")


def reserve(context: SagaContext[Order]) -> ReserveStock:
    return ReserveStock(order_id=context.data.order_id, items=context.data.items)


def test_a_step_whose_request_cannot_be_built_fails_and_compensates() -> None:
    saga = order_saga()
    broken = Saga(
        "order",
        data=Order,
        steps=[
            saga.steps[0],
            Step("charge", action=Send("payments", failing_builder), result=Reserved),
        ],
    )
    run = Run(broken)
    run.start()

    failed = run.succeed()

    assert run.kinds(failed) == ["SagaStepSucceeded", "SagaStepFailed", "SagaCompensationRequested"]
    assert "builder bug" in failed.events[1].reason  # type: ignore[union-attr]


def test_a_compensation_that_cannot_be_built_counts_as_failed_attempts_until_stuck() -> None:
    steps = [
        Step(
            "reserve",
            action=Send("inventory", reserve),
            compensation=Send("inventory", failing_builder),
            result=Reserved,
        ),
        Step("charge", action=Send("payments", reserve), result=Reserved),
    ]
    run = Run(Saga("order", data=Order, steps=steps, compensation_retry=RETRY))
    run.start()
    run.succeed()
    run.reject()
    fire(run, "retry:")
    fire(run, "retry:")

    assert run.saga_state.status == "stuck"
    assert "builder bug" in (run.saga_state.stuck_reason or "")
    assert run.kinds().count("SagaCompensationRequested") == 0


def test_local_commands_and_calls_are_requested_with_the_step_s_idempotency_key() -> None:
    keys: list[str] = []

    async def book(context: SagaContext[Order], key: str) -> dict[str, str]:
        keys.append(key)
        return {"reservation_id": f"r-{context.data.order_id}"}

    saga = Saga(
        "order",
        data=Order,
        steps=[
            Step("reserve", action=Local(reserve), compensation=Local(reserve), result=Reserved),
            Step("book", action=Call(book), result=Reserved),
        ],
    )
    run = Run(saga)

    (local,) = run.start().requests
    (call,) = run.succeed({"reservation_id": "r"}).requests

    assert isinstance(local, RunLocal)
    assert local.command == reserve(saga.context("o-1", ORDER, {}))
    assert isinstance(call, InvokeCall)
    assert asyncio.run(call.invoke()) == {"reservation_id": "r-o-1"}  # type: ignore[arg-type]
    assert keys == [call.idempotency_key]


def test_the_request_in_flight_is_built_again_the_same_after_a_restart() -> None:
    run = Run(order_saga())
    run.start()
    sent_first = run.succeed().requests[0]

    assert outstanding(run.saga, run.saga_state) == sent_first
    completed(run2 := Run(order_saga()))
    assert outstanding(run2.saga, run2.saga_state) is None


# --- inputs the saga refuses ----------------------------------------------------------------


def test_a_reply_whose_result_cannot_be_stored_is_refused() -> None:
    run = Run(order_saga())
    run.start()
    before = run.saga_state

    with pytest.raises(InvalidSagaInput, match="a reply's result cannot be stored"):
        run.feed(Reply.success(run.pending.correlation_id, object()))
    assert run.saga_state == before


def test_a_state_of_another_saga_type_is_refused() -> None:
    run = Run(order_saga())
    run.start()
    other = Saga("refund", data=Order, steps=order_saga().steps)

    with pytest.raises(InvalidSagaInput, match="its state is that of a 'order' saga"):
        decide(other, run.saga_state, Reply.success(run.pending.correlation_id), 0.0)


def test_a_step_the_definition_no_longer_has_leaves_the_saga_stuck_with_the_reason() -> None:
    run = Run(order_saga())
    run.start()
    run.succeed()
    # A new release drops the first step while this saga runs.
    run.saga = Saga("order", data=Order, steps=order_saga().steps[1:], compensation_retry=RETRY)
    run.reject()
    fire(run, "retry:")
    fire(run, "retry:")

    assert run.saga_state.status == "stuck"
    assert "the definition of 'order' has no step 'reserve'" in (run.saga_state.stuck_reason or "")


def test_the_request_in_flight_of_a_step_the_definition_lacks_cannot_be_built_again() -> None:
    run = Run(order_saga())
    run.start()
    changed = Saga("order", data=Order, steps=order_saga().steps[1:])

    with pytest.raises(InvalidSagaInput, match="has no step 'reserve'"):
        outstanding(changed, run.saga_state)
