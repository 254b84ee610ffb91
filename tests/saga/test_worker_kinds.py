"""The three kinds of action, sagas started from events, several instances of the owner,
and the saga records on the hooks seam."""

from __future__ import annotations

from typing import Any

import pytest

from eventcore import Event, EventRegistry, Executor, StreamId, TopicMap
from eventcore.errors import InvalidInput
from eventcore.instrumentation import (
    Hooks,
    SagaCompensationEnded,
    SagaOpened,
    SagaStatusChanged,
    SagaStepEnded,
)
from eventcore.lifecycle import running
from eventcore.saga import (
    Call,
    Local,
    Saga,
    SagaContext,
    SagaManager,
    SagaWorker,
    Send,
    StartOn,
    Step,
    idempotency_key,
)
from eventcore.testing import Services
from tests.saga.conftest import Site
from tests.saga.world import (
    ACCEPTS,
    PLACED,
    RULES,
    BookShipment,
    HoldCredit,
    Order,
    OrderPlaced,
    Ref,
    ReleaseCredit,
    order_saga,
    order_stream,
    participant_executor,
    result_of,
    world,
)

pytestmark = pytest.mark.timeout(60)


class Notifier:
    """A far service called over HTTP, say: runs each key once, remembers the keys."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.done: dict[str, Ref] = {}
        self.fail = False

    async def notify(self, context: SagaContext[Order], key: str) -> Ref:
        self.calls.append(("notify", key))
        if self.fail:
            raise ConnectionError("notifier down")
        return self.done.setdefault(key, Ref(ref=f"note-{context.data.order_id}"))

    async def unnotify(self, context: SagaContext[Order], key: str) -> None:
        self.calls.append(("unnotify", key))


def hold(context: SagaContext[Order]) -> HoldCredit:
    order = context.data.order_id
    return HoldCredit(stream=order_stream("orders", order), order_id=order)


def release(context: SagaContext[Order]) -> ReleaseCredit:
    order = context.data.order_id
    return ReleaseCredit(stream=order_stream("orders", order), order_id=order)


def ship(context: SagaContext[Order]) -> BookShipment:
    order = context.data.order_id
    return BookShipment(stream=order_stream("shipping", order), order_id=order)


def held(command: HoldCredit, events: tuple[Event, ...]) -> dict[str, str]:
    return {"ref": f"held-{command.order_id}-{len(events)}"}


def checkout(notifier: Notifier) -> Saga[Order]:
    return Saga(
        "checkout",
        data=Order,
        steps=[
            Step(
                "hold",
                action=Local(hold, result=held),
                compensation=Local(release),
                result=Ref,
                timeout=2.0,
            ),
            Step(
                "notify",
                action=Call(notifier.notify),
                compensation=Call(notifier.unnotify),
                result=Ref,
                timeout=2.0,
            ),
            Step("ship", action=Send("shipping", ship), result=Ref, timeout=2.0),
        ],
    )


@pytest.mark.parametrize("ships", [True, False], ids=["completes", "compensates"])
async def test_local_commands_and_calls_are_steps_like_any_other(
    memory_site: Site, ships: bool
) -> None:
    bus, stores = memory_site
    notifier = Notifier()
    saga = checkout(notifier)
    async with world(bus, stores) as built:
        if not ships:
            RULES.refuse("BookShipment")
        executor = Executor(stores["orders"], built.registry)
        worker = built.worker(saga, executor=executor)
        async with running(worker):
            await worker.start(saga, "c-1", Order("1", 5))
            state = await worker.wait(saga, "c-1", timeout=40)
        held_here = await built.effects("orders", "1")

    key = idempotency_key("checkout", "c-1", "notify", "action")
    assert state.results["hold"] == {"ref": "held-1-1"}
    assert state.results["notify"] == {"ref": "note-1"}
    if ships:
        assert state.status == "completed"
        assert held_here == ["hold"]
        assert notifier.calls == [("notify", key)]
    else:
        assert state.status == "compensated"
        assert state.compensated == ("notify", "hold")
        assert held_here == ["hold", "undo hold"]
        undo = idempotency_key("checkout", "c-1", "notify", "compensation")
        assert notifier.calls == [("notify", key), ("unnotify", undo)]


async def test_a_call_that_raises_fails_its_step(memory_site: Site) -> None:
    bus, stores = memory_site
    notifier = Notifier()
    notifier.fail = True
    saga = checkout(notifier)
    async with world(bus, stores) as built:
        worker = built.worker(saga, executor=Executor(stores["orders"], built.registry))
        async with running(worker):
            await worker.start(saga, "c-2", Order("2", 5))
            state = await worker.wait(saga, "c-2", timeout=40)
            view = await worker.manager.show("c-2")

    assert state.status == "compensated"
    assert state.compensated == ("hold",)
    notify = next(step for step in view.steps if step.name == "notify")
    assert notify.attempts[0].reason == "the call raised ConnectionError('notifier down')"


async def test_a_local_command_in_flight_runs_again_after_a_restart_once_in_effect(
    memory_site: Site,
) -> None:
    """The owner appended the Local request and died before running it: the next worker
    runs it (same key); a repeat of it would change nothing."""
    bus, stores = memory_site
    notifier = Notifier()
    saga = checkout(notifier)
    async with world(bus, stores) as built:
        executor = Executor(stores["orders"], built.registry)
        # A manager without a worker records the start (and the Local request), and
        # runs nothing: as if the owner had died right after the append.
        tool = SagaManager.over(stores["orders"], built.registry, [saga], service="orders")
        await tool.start(saga, "c-3", Order("3", 5))
        worker = built.worker(saga, executor=executor)
        async with running(worker):
            state = await worker.wait(saga, "c-3", timeout=40)
        held_here = await built.effects("orders", "3")

    assert state.status == "completed"
    assert held_here == ["hold"]
    assert worker.status().recovered == 1


def placed_saga() -> Saga[Order]:
    base = order_saga()
    return Saga(
        "place-order",
        data=Order,
        steps=base.steps,
        compensation_retry=base.compensation_retry,
        start_on=[
            StartOn(
                OrderPlaced,
                saga_id=lambda placed: f"order-{placed.order_id}",
                data=lambda placed: Order(placed.order_id, placed.amount),
            )
        ],
    )


async def test_an_event_starts_a_saga_once_however_often_it_comes(site: Site) -> None:
    bus, stores = site
    saga = placed_saga()
    async with world(bus, stores) as built:
        worker = built.worker(saga, start_topics=[PLACED])
        async with running(worker):
            orders = StreamId("orders-13")
            placed = [built.registry.encode(OrderPlaced(order_id="13", amount=7)) for _ in "ab"]
            await stores["orders"].append({orders: placed}, expected={orders: 0})
            await built.services.until_idle(timeout=40)
            state = await worker.wait(saga, "order-13", timeout=40)
        effects = await built.effects("inventory", "13")

    assert state.status == "completed"
    assert effects == ["reserve"]
    assert worker.status().started == 1


async def test_several_instances_share_the_sagas_each_moved_once(site: Site) -> None:
    bus, stores = site
    saga = order_saga()
    async with world(bus, stores) as built:
        RULES.refuse("BookShipment", times=3)
        first = built.worker(saga, member="a")
        second = built.worker(saga, member="b")
        async with running(first, second):
            ids = [f"m-{n}" for n in range(8)]
            for n, saga_id in enumerate(ids):
                await (first if n % 2 else second).start(saga, saga_id, Order(saga_id, n))
            states = [await first.wait(saga, saga_id, timeout=40) for saga_id in ids]
        shipped = [await built.effects("shipping", saga_id) for saga_id in ids]
        charged = [await built.effects("payments", saga_id) for saga_id in ids]

    statuses = [state.status for state in states]
    assert statuses.count("compensated") == 3
    assert statuses.count("completed") == 5
    for state, ship_effects, charge_effects in zip(states, shipped, charged, strict=True):
        if state.status == "completed":
            assert (ship_effects, charge_effects) == (["ship"], ["charge"])
        else:
            assert (ship_effects, charge_effects) == ([], ["charge", "undo charge"])


class Recorder(Hooks):
    def __init__(self) -> None:
        self.records: list[Any] = []

    def saga_started(self, event: SagaOpened) -> None:
        self.records.append(event)

    def saga_step_finished(self, event: SagaStepEnded) -> None:
        self.records.append(event)

    def saga_compensation_finished(self, event: SagaCompensationEnded) -> None:
        self.records.append(event)

    def saga_status_changed(self, event: SagaStatusChanged) -> None:
        self.records.append(event)


async def test_the_hooks_hear_of_starts_steps_compensations_and_statuses(
    memory_site: Site,
) -> None:
    bus, stores = memory_site
    saga = order_saga()
    recorder = Recorder()
    async with world(bus, stores) as built:
        RULES.refuse("BookShipment")
        worker = built.worker(saga, hooks=recorder)
        async with running(worker):
            await worker.start(saga, "h-1", Order("1", 5))
            await worker.wait(saga, "h-1", timeout=40)

    records = recorder.records
    assert [r for r in records if isinstance(r, SagaOpened)] == [
        SagaOpened(saga="place-order", saga_id="h-1")
    ]
    steps = [(r.step, r.outcome) for r in records if isinstance(r, SagaStepEnded)]
    assert steps == [("reserve", "succeeded"), ("charge", "succeeded"), ("ship", "failed")]
    assert all(r.seconds >= 0 for r in records if isinstance(r, SagaStepEnded))
    compensations = [
        (r.step, r.attempt, r.outcome) for r in records if isinstance(r, SagaCompensationEnded)
    ]
    assert compensations == [("charge", 1, "succeeded"), ("reserve", 1, "succeeded")]
    statuses = [(r.previous, r.status) for r in records if isinstance(r, SagaStatusChanged)]
    assert statuses == [
        (None, "running"),
        ("running", "compensating"),
        ("compensating", "compensated"),
    ]


async def test_services_run_a_saga_worker_and_wait_for_its_replies(memory_site: Site) -> None:
    """``Services.saga_worker``: run with the relays and receivers, its replies waited for
    by ``until_idle``."""
    bus, stores = memory_site
    saga = order_saga()
    services = Services(bus)
    for service in ("orders", *ACCEPTS):
        services.relay(stores[service], TopicMap(), service=service, poll_interval=0.05)
    for service, accepts in ACCEPTS.items():
        services.receiver(
            participant_executor(stores[service]),
            dict.fromkeys(accepts, result_of),
            service=service,
        )
    worker = services.saga_worker(
        stores["orders"], [saga], service="orders", registry=EventRegistry(), poll_interval=0.05
    )
    async with services.running():
        await worker.ready()
        await worker.start(saga, "s-1", Order("1", 5))
        state = await worker.wait(saga, "s-1", timeout=40)
        await services.until_idle(timeout=40)

    assert state.status == "completed"
    assert worker.status().replies == 3


async def test_two_instances_fire_a_deadline_once_in_effect(memory_site: Site) -> None:
    bus, stores = memory_site
    saga = order_saga(timeouts={"ship": 0.2})
    async with world(bus, stores, silent=frozenset({"shipping"})) as built:
        first = built.worker(saga, member="a")
        second = built.worker(saga, member="b")
        async with running(first, second):
            await first.start(saga, "d-1", Order("1", 5))
            state = await second.wait(saga, "d-1", timeout=40)
        view = await first.manager.show("d-1")
        charged = await built.effects("payments", "1")

    assert state.status == "compensated"
    assert charged == ["charge", "undo charge"]
    assert [entry.event for entry in view.timeline].count("SagaStepTimedOut") == 1
    assert first.status().timer.changed + second.status().timer.changed == 1


def test_start_topics_need_a_saga_that_starts_on_an_event(memory_site: Site) -> None:
    bus, stores = memory_site
    with pytest.raises(InvalidInput, match="no saga here starts on an event"):
        SagaWorker(
            stores["orders"],
            bus,
            [order_saga()],
            service="orders",
            registry=EventRegistry(),
            start_topics=["orders-placed"],
        )
