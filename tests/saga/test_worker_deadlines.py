"""Deadlines are kept in the saga's stream and fired by the timer: a participant that
never answers makes the saga compensate after the step's timeout; an owner stopped
while waiting and started again after the deadline passed still compensates; a reply
that comes after that is recorded and changes nothing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from eventcore.lifecycle import running
from eventcore.saga import SagaLateReply, SagaState
from tests.saga.conftest import Site
from tests.saga.world import Order, late_receiver, order_saga, world

pytestmark = pytest.mark.timeout(60)


def answered(step: str) -> Callable[[SagaState], bool]:
    """Whether the saga has taken a reply to ``step``'s action (in time or late)."""

    def has(state: SagaState) -> bool:
        return any(
            issued.step == step and issued.phase == "action" and correlation in state.answered
            for correlation, issued in state.issued.items()
        )

    return has


async def test_a_participant_that_never_answers_times_out_and_is_compensated(
    site: Site,
) -> None:
    bus, stores = site
    saga = order_saga(timeouts={"ship": 0.3})
    async with world(bus, stores, silent=frozenset({"shipping"})) as built:
        worker = built.worker(saga)
        async with running(worker):
            await worker.start(saga, "order-3", Order("3", 10))
            state = await worker.wait(saga, "order-3", timeout=40)
            # Shipping comes up at last and answers the request it was sent: too late.
            async with running(late_receiver(built, "shipping")):
                await built.services.until_idle(timeout=40)
                late = await worker.index.wait_for(
                    worker.manager.stream(saga, "order-3"), answered("ship"), timeout=40
                )
                view = await worker.manager.show("order-3")
        effects = [await built.effects(service, "3") for service in ("inventory", "payments")]
        shipped = await built.effects("shipping", "3")

    assert state.status == "compensated"
    assert state.compensated == ("charge", "reserve")
    assert effects == [["reserve", "undo reserve"], ["charge", "undo charge"]]
    ship = next(step for step in view.steps if step.name == "ship")
    assert ship.status == "timed out"
    assert ship.attempts[0].reason == "no reply within 0.3 s"
    # The late success is recorded, and the saga stays compensated.
    assert shipped == ["ship"]
    assert [(reply.succeeded, reply.phase) for reply in ship.late_replies] == [(True, "action")]
    assert late.status == "compensated"
    assert late.compensated == ("charge", "reserve")
    assert worker.status().replies >= 5


async def test_a_deadline_that_fell_due_while_the_owner_was_down_fires_after_restart(
    site: Site,
) -> None:
    bus, stores = site
    saga = order_saga(timeouts={"ship": 0.3})
    async with world(bus, stores, silent=frozenset({"shipping"})) as built:
        first = built.worker(saga)
        async with running(first):
            await first.start(saga, "order-4", Order("4", 10))
            waiting = await first.wait(saga, "order-4", until={"running"}, timeout=40)
            while waiting.pending is None or waiting.pending.step != "ship":
                waiting = await first.index.wait_for(
                    first.manager.stream(saga, "order-4"),
                    lambda state: state.pending is not None and state.pending.step == "ship",
                    timeout=40,
                )
        # The owner is down; the ship step's timeout passes.
        assert waiting.pending is not None
        assert waiting.pending.timeout_at is not None
        await asyncio.sleep(max(waiting.pending.timeout_at - time.time(), 0) + 0.05)
        second = built.worker(saga)
        async with running(second):
            state = await second.wait(saga, "order-4", timeout=40)
        effects = [await built.effects(service, "4") for service in ("inventory", "payments")]

    assert state.status == "compensated"
    assert effects == [["reserve", "undo reserve"], ["charge", "undo charge"]]
    assert second.status().timer.changed >= 1


async def test_a_late_reply_after_compensation_changes_nothing_but_is_recorded(
    memory_site: Site,
) -> None:
    bus, stores = memory_site
    saga = order_saga(timeouts={"charge": 0.2})
    async with world(bus, stores, silent=frozenset({"payments"})) as built:
        worker = built.worker(saga)
        async with running(worker):
            await worker.start(saga, "order-5", Order("5", 10))
            compensated = await worker.wait(saga, "order-5", timeout=40)
            async with running(late_receiver(built, "payments")):
                await built.services.until_idle(timeout=40)
                stream = worker.manager.stream(saga, "order-5")
                after = await worker.index.wait_for(stream, answered("charge"), timeout=40)
        events = [
            built.registry.decode(stored)
            for stored in await stores["orders"].read_stream(stream)
            if stored.type == "SagaLateReply"
        ]

    assert compensated.status == "compensated"
    assert after.status == "compensated"
    assert after.compensated == ("reserve",)
    [late] = events
    assert isinstance(late, SagaLateReply)
    assert (late.step, late.succeeded, late.compensate) == ("charge", True, False)


async def test_a_late_success_the_step_asks_to_undo_is_compensated(memory_site: Site) -> None:
    bus, stores = memory_site
    saga = order_saga(timeouts={"ship": 0.2}, compensate_late_success=True)
    async with world(bus, stores, silent=frozenset({"shipping"})) as built:
        worker = built.worker(saga)
        async with running(worker):
            await worker.start(saga, "order-6", Order("6", 10))
            await worker.wait(saga, "order-6", timeout=40)
            async with running(late_receiver(built, "shipping")):
                stream = worker.manager.stream(saga, "order-6")
                state = await worker.index.wait_for(
                    stream,
                    lambda state: state.status == "compensated" and "ship" in state.compensated,
                    timeout=40,
                )
                await built.services.until_idle(timeout=40)
        shipped = await built.effects("shipping", "6")

    assert state.compensated == ("charge", "reserve", "ship")
    assert shipped == ["ship", "undo ship"]


async def test_the_sagas_deadline_ends_a_step_that_waits_longer(memory_site: Site) -> None:
    bus, stores = memory_site
    saga = order_saga(deadline=0.3)  # the steps would wait 5 s each
    async with world(bus, stores, silent=frozenset({"shipping"})) as built:
        worker = built.worker(saga)
        async with running(worker):
            await worker.start(saga, "order-14", Order("14", 10))
            state = await worker.wait(saga, "order-14", timeout=40)
            view = await worker.manager.show("order-14")

    assert state.status == "compensated"
    ship = next(step for step in view.steps if step.name == "ship")
    assert ship.status == "timed out"
    assert ship.attempts[0].reason == "the saga's deadline passed (0.3 s after it started)"
