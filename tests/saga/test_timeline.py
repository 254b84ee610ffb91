"""What an operator reads about a saga, built from its stream alone; and the stream
survives the codec a store keeps it with."""

from __future__ import annotations

import pytest

from eventcore.errors import InvalidInput
from eventcore.events import EventRegistry
from eventcore.saga import SAGA_EVENTS, DeadlineFired, Reply, SagaEvent, SagaView, replay
from tests.saga.order import STEPS, Run, order_saga


def failed_at_shipping_with_a_flaky_release() -> Run:
    """reserve and charge succeed; ship is rejected; the refund works at once; the
    release times out, then its first attempt's success comes late."""
    run = Run(order_saga(timeout=5.0), now=100.0)
    run.start()
    run.now = 101.5
    run.succeed()
    run.now = 104.0
    run.succeed()
    run.now = 104.25
    run.reject("no truck")
    run.now = 105.0
    run.succeed()
    first = run.pending.correlation_id
    run.now = 110.0
    run.feed(DeadlineFired(key=f"timeout:{first}"))
    run.now = 111.0
    (retry,) = run.saga_state.deadlines()
    run.feed(DeadlineFired(key=retry))
    run.now = 112.0
    run.feed(Reply.success(first))
    return run


def test_the_view_of_a_completed_saga_shows_each_step_s_result_and_duration() -> None:
    run = Run(order_saga(), now=100.0)
    run.start()
    for at, step in zip((100.5, 102.0, 102.25), STEPS, strict=True):
        run.now = at
        run.succeed({"reserve": {"reservation_id": "r-1"}}.get(step))

    view = SagaView.of(run.events)

    assert (view.status, view.started_at, view.ended_at, view.duration) == (
        "completed",
        100.0,
        102.25,
        2.25,
    )
    assert [(step.name, step.status) for step in view.steps] == [
        (step, "succeeded") for step in STEPS
    ]
    assert [step.attempts[0].duration for step in view.steps] == [0.5, 1.5, 0.25]
    assert view.steps[0].result == {"reservation_id": "r-1"}
    assert view.state == run.state


def test_the_view_of_a_compensated_saga_shows_every_attempt_and_how_it_ended() -> None:
    view = SagaView.of(failed_at_shipping_with_a_flaky_release().events)

    steps = {step.name: step for step in view.steps}
    assert view.status == "compensated"
    assert {name: step.status for name, step in steps.items()} == {
        "reserve": "compensated",
        "charge": "compensated",
        "ship": "failed",
    }
    assert steps["ship"].attempts[0].reason == "no truck"
    assert [
        (attempt.phase, attempt.attempt, attempt.outcome, attempt.duration)
        for attempt in steps["reserve"].attempts
    ] == [
        ("action", 1, "succeeded", 1.5),
        ("compensation", 1, "succeeded", 7.0),
        ("compensation", 2, "superseded", None),
    ]
    assert steps["charge"].late_replies == ()


def test_the_timeline_has_one_entry_per_event_in_words() -> None:
    run = failed_at_shipping_with_a_flaky_release()

    view = SagaView.of(run.events)

    assert len(view.timeline) == len(run.events)
    assert [entry.at for entry in view.timeline] == sorted(entry.at for entry in view.timeline)
    details = [(entry.step, entry.detail) for entry in view.timeline]
    assert ("ship", "action failed: no truck") in details
    assert (
        "reserve",
        "compensation attempt 1 timed out: no reply within 5 s; again at 111.000",
    ) in details
    assert details[-1] == (None, "compensated")


def test_a_late_reply_and_a_stuck_saga_are_shown_with_their_reasons() -> None:
    run = Run(order_saga(timeout=5.0), now=0.0)
    run.start()
    late = run.pending.correlation_id
    run.now = 5.0
    run.feed(DeadlineFired(key=f"timeout:{late}"))
    run.feed(Reply.rejection(late, "too late"))

    view = SagaView.of(run.events)

    (reply,) = view.steps[0].late_replies
    assert (reply.succeeded, reply.reason, reply.compensate) == (False, "too late", False)
    assert view.timeline[-1].detail == "late reply to the action: failed: too late; ignored"


def test_a_view_needs_a_saga_s_events() -> None:
    with pytest.raises(InvalidInput, match="none were given"):
        SagaView.of([])


def test_a_saga_s_stream_read_back_through_the_codec_folds_to_the_same_state() -> None:
    run = failed_at_shipping_with_a_flaky_release()
    registry = EventRegistry(SAGA_EVENTS)

    stored = [registry.encode(event) for event in run.events]
    decoded: list[SagaEvent] = [
        registry.decode_payload(new.type, new.schema_version, new.data)  # type: ignore[misc]
        for new in stored
    ]

    assert decoded == run.events
    assert replay(decoded) == run.state
