"""One service of the crash test, in a process of its own, to be ``kill -9``-ed.

``python -m tests.saga.crash_service SERVICE STORE_URL BUS_URL``: ``orders`` runs its
relay and the saga worker of ``SAGA``; ``inventory``, ``payments`` and ``shipping`` run
their relay and command receiver. It prints ``ready`` once its workers are, and runs
until SIGTERM (a clean stop) or SIGKILL (the point of the test).

The bus URL is opened with a short partition lease and the subscribers with a short
``ack_wait``, so a restarted process takes over from the one that was killed within
seconds rather than the production defaults' tens of seconds. The participants refuse
some orders by their number, the same way on every delivery (``refuses``), so the test
knows which sagas must compensate, and at which step.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import Any, Final

from eventcore import CommandRejected, EventRegistry, Worker
from eventcore.command import Writes
from eventcore.lifecycle import running
from eventcore.messaging import TopicMap
from eventcore.messaging.bus import Bus
from eventcore.messaging.commands import CommandReceiver
from eventcore.messaging.relay import Relay
from eventcore.messaging.url import BusUrl
from eventcore.retry import RetryPolicy
from eventcore.saga import Saga, SagaWorker, Step
from eventcore.store import open_store
from tests.saga.world import (
    ACCEPTS,
    EVENTS,
    PARTICIPANTS,
    STEPS,
    BookShipment,
    ChargeCard,
    Order,
    Ref,
    _send,
    participant_executor,
    result_of,
)

#: Seconds a restarted process waits at most for the partitions its killed
#: predecessor held, and for the messages it had fetched but not settled.
LEASE_TTL: Final = 2.0
ACK_WAIT: Final = 5.0
#: Far above what a kill costs a step (a restart and a lease) and what 300 sagas queued
#: at once make one wait on NATS and PostgreSQL on a loaded machine (tens of seconds), so
#: no step here ends by its timeout and the test knows how each saga ends; if one did,
#: ``compensate_late_success`` would still undo what it did.
STEP_TIMEOUT: Final = 150.0
RETRY: Final = RetryPolicy(max_attempts=10, initial_delay=0.2, max_delay=1.0)


def refuses(order_id: str) -> str | None:
    """The step whose action the participants refuse for this order, if any: one order
    in five is declined a charge, another in five cannot ship."""
    number = int(order_id.rpartition("-")[2])
    return {1: "charge", 2: "ship"}.get(number % 5)


def crash_saga() -> Saga[Order]:
    steps: list[Step[Order, Any]] = []
    for name, service in zip(STEPS, PARTICIPANTS, strict=True):
        action, undo = ACCEPTS[service]
        steps.append(
            Step(
                name,
                action=_send(service, action),
                compensation=_send(service, undo),
                result=Ref,
                timeout=STEP_TIMEOUT,
                compensate_late_success=True,
            )
        )
    return Saga("crash-order", data=Order, steps=steps, compensation_retry=RETRY)


SAGA: Final = crash_saga()


class DecliningCharge(ChargeCard):
    __command_type__ = "ChargeCard"

    def handle(self, state: int) -> Writes:
        if refuses(self.order_id) == "charge":
            raise CommandRejected("card declined")
        return super().handle(state)


class RefusingShipment(BookShipment):
    __command_type__ = "BookShipment"

    def handle(self, state: int) -> Writes:
        if refuses(self.order_id) == "ship":
            raise CommandRejected("no truck")
        return super().handle(state)


def accepted(service: str) -> tuple[type[Any], ...]:
    action, undo = ACCEPTS[service]
    replaced = {ChargeCard: DecliningCharge, BookShipment: RefusingShipment}
    return (replaced.get(action, action), undo)


async def open_bus_for_test(url: str) -> Bus:
    """The bus at ``url`` with the test's short lease (the URL cannot carry one)."""
    parsed = BusUrl.parse(url)
    if url.startswith("nats://"):
        from eventcore.messaging.nats import NatsBus

        nats_bus: Bus = await NatsBus.connect(parsed, lease_ttl=LEASE_TTL)
        return nats_bus
    from eventcore.messaging.sqlite import SqliteBus

    sqlite_bus: Bus = await SqliteBus.open(parsed, create=True, lease_ttl=LEASE_TTL)
    return sqlite_bus


async def serve(service: str, store_url: str, bus_url: str) -> None:
    store = await open_store(store_url)
    bus = await open_bus_for_test(bus_url)
    workers: list[Worker[Any]] = [
        Relay(store, bus, TopicMap(), service=service, poll_interval=0.05)
    ]
    if service == "orders":
        workers.append(
            SagaWorker(
                store,
                bus,
                [SAGA],
                service="orders",
                registry=EventRegistry(EVENTS),
                poll_interval=0.05,
                ack_wait=ACK_WAIT,
            )
        )
    else:
        workers.append(
            CommandReceiver(
                bus,
                participant_executor(store),
                dict.fromkeys(accepted(service), result_of),
                service=service,
                ack_wait=ACK_WAIT,
            )
        )
    stopping = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopping.set)
    try:
        async with running(*workers):
            print("ready", flush=True)
            await stopping.wait()
    finally:
        await bus.aclose()
        await store.aclose()


if __name__ == "__main__":
    asyncio.run(serve(*sys.argv[1:4]))
