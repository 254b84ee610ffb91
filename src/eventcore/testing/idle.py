"""Run relays and subscribers in a test and wait until they are idle, without polling.

::

    services = Services(bus)
    services.relay(store, topics, service="bank")
    ledger = services.subscriber("deposits", handlers, group="ledger")
    async with services.running():
        await executor.execute(...)
        await services.until_idle(timeout=10)
    # every event published, every message handled (or parked)

"Idle" means: every relay has published and had acknowledged everything in its store up
to the head, and every subscriber group has settled (handled, ignored or parked, then
acknowledged) every message published on its topic through these services. Both are
checked again after each wait, so work that causes more work (a handler whose command
appends events the relay then publishes) is waited for as well.

The services share one bus handle that notes every accepted publish and every
acknowledgement; nothing is timed, the wait ends as soon as the last one lands. Works on
any backend; needs nothing beyond eventcore.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

from eventcore.command import Command
from eventcore.events import EventRegistry
from eventcore.executor import Executor
from eventcore.messaging.bus import Bus, Consumer, Delivery, OutgoingMessage
from eventcore.messaging.commands import CommandReceiver, CommandSender, ResultOf
from eventcore.messaging.inbox import Handler
from eventcore.messaging.relay import Relay
from eventcore.messaging.subscriber import Subscriber
from eventcore.messaging.topics import TopicMap
from eventcore.saga.definition import Saga
from eventcore.saga.worker import SagaWorker
from eventcore.store import EventStore
from eventcore.testing._wrapping import BusWrapper, ConsumerWrapper
from eventcore.testing.faults import FaultPlan, FaultyBus

__all__ = ["Services", "until_idle"]


class _Watch:
    """What was accepted per topic and settled per (group, topic); wakes waiters on each."""

    def __init__(self) -> None:
        self.published: defaultdict[str, set[str]] = defaultdict(set)
        self.settled: defaultdict[tuple[str, str], set[str]] = defaultdict(set)
        self.changed = asyncio.Condition()

    async def note(self) -> None:
        async with self.changed:
            self.changed.notify_all()


class _WatchedBus(BusWrapper):
    """``bus``, noting every publish it accepted."""

    def __init__(self, bus: Bus, watch: _Watch) -> None:
        super().__init__(bus)
        self._watch = watch

    async def publish(self, messages: Sequence[OutgoingMessage]) -> None:
        await super().publish(messages)
        for message in messages:
            self._watch.published[message.topic].add(message.message_id)
        await self._watch.note()

    def _wrap(self, consumer: Consumer, group: str) -> Consumer:
        return _WatchedConsumer(consumer, self._watch, group)


class _WatchedConsumer(ConsumerWrapper):
    def __init__(self, consumer: Consumer, watch: _Watch, group: str) -> None:
        super().__init__(consumer)
        self._watch = watch
        self._group = group

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        await super().ack(deliveries)
        for delivery in deliveries:
            self._watch.settled[self._group, delivery.topic].add(delivery.message_id)
        await self._watch.note()


class Services:
    """Relays and subscribers sharing one bus, run together and waited on together.

    Make them with :meth:`relay` and :meth:`subscriber` (same arguments as
    :class:`~eventcore.messaging.relay.Relay` and
    :class:`~eventcore.messaging.subscriber.Subscriber`, less the bus), run them with
    ``async with services.running():``, and ``await services.until_idle()`` inside.
    With ``faults``, their bus misbehaves as the :class:`FaultPlan` says.
    """

    def __init__(self, bus: Bus, *, faults: FaultPlan | None = None) -> None:
        self._watch = _Watch()
        watched = _WatchedBus(bus, self._watch)
        #: The bus the services use: with ``faults``, a :class:`FaultyBus` over the one
        #: that notes what is published and settled, so a fault never hides a real
        #: acknowledgement from :meth:`until_idle`. Publish through it too.
        self.bus: Bus = watched if faults is None else FaultyBus(watched, faults)
        self.relays: list[tuple[Relay, EventStore]] = []
        self.subscribers: list[
            tuple[Subscriber | CommandReceiver | CommandSender | SagaWorker, str, str]
        ] = []

    @property
    def faults(self) -> list[tuple[str, str]]:
        """``(call, fault)`` for every fault injected so far; [] without ``faults``."""
        return self.bus.faults if isinstance(self.bus, FaultyBus) else []

    def relay(self, store: EventStore, topics: TopicMap, *, service: str, **options: Any) -> Relay:
        relay = Relay(store, self.bus, topics, service=service, **options)
        self.relays.append((relay, store))
        return relay

    def subscriber(
        self,
        topic: str,
        handlers: Mapping[Any, Handler] | Sequence[Handler],
        *,
        group: str,
        **options: Any,
    ) -> Subscriber:
        subscriber = Subscriber(self.bus, topic, handlers, group=group, **options)
        self.subscribers.append((subscriber, topic, group))
        return subscriber

    def receiver(
        self,
        executor: Executor,
        commands: Sequence[type[Command[Any]]] | Mapping[type[Command[Any]], ResultOf | None],
        *,
        service: str,
        **options: Any,
    ) -> CommandReceiver:
        """A :class:`~eventcore.messaging.commands.CommandReceiver` of ``service``."""
        receiver = CommandReceiver(self.bus, executor, commands, service=service, **options)
        status = receiver.status().subscriber
        self.subscribers.append((receiver, status.topic, status.group))
        return receiver

    def sender(
        self, store: EventStore, registry: EventRegistry, *, service: str, **options: Any
    ) -> CommandSender:
        """A :class:`~eventcore.messaging.commands.CommandSender` of ``service``."""
        sender = CommandSender(store, self.bus, registry, service=service, **options)
        status = sender.status().subscriber
        self.subscribers.append((sender, status.topic, status.group))
        return sender

    def saga_worker(
        self,
        store: EventStore,
        sagas: Sequence[Saga[Any]],
        *,
        service: str,
        registry: EventRegistry,
        **options: Any,
    ) -> SagaWorker:
        """A :class:`~eventcore.saga.SagaWorker` of ``service``. :meth:`until_idle`
        waits for its replies to be taken; a saga's end is ``worker.wait(...)``'s."""
        worker = SagaWorker(store, self.bus, sagas, service=service, registry=registry, **options)
        status = worker.status().reply_subscriber
        self.subscribers.append((worker, status.topic, status.group))
        return worker

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Services]:
        """Run every relay and subscriber; on exit stop them all and wait for them. A
        worker that fails is raised here (as itself when it is the only one)."""
        workers = [relay for relay, _ in self.relays] + [sub for sub, _, _ in self.subscribers]
        tasks = [asyncio.create_task(worker.run()) for worker in workers]
        try:
            yield self
        finally:
            for worker in workers:
                worker.stop()
            results = await asyncio.gather(*tasks, return_exceptions=True)
            failures = [r for r in results if isinstance(r, BaseException)]
            if len(failures) == 1:
                raise failures[0]
            if failures:
                raise BaseExceptionGroup("services failed", failures)

    def _unsettled(self) -> int:
        return sum(
            len(self._watch.published[topic] - self._watch.settled[group, topic])
            for _, topic, group in self.subscribers
        )

    async def until_idle(self, timeout: float = 30.0) -> None:  # noqa: ASYNC109
        """Return once every relay has caught up with its store's head and every
        subscriber group has settled every message published on its topic; raises
        ``TimeoutError`` after ``timeout`` seconds."""
        async with asyncio.timeout(timeout):
            while True:
                for relay, store in self.relays:
                    await relay.published(await store.last_position())
                async with self._watch.changed:
                    await self._watch.changed.wait_for(lambda: self._unsettled() == 0)
                # Handlers may have appended events since: idle only when a pass waited
                # for nothing.
                heads = [await store.last_position() for _, store in self.relays]
                if all(
                    relay.position >= head
                    for (relay, _), head in zip(self.relays, heads, strict=True)
                ) and (self._unsettled() == 0):
                    return


async def until_idle(services: Services, timeout: float = 30.0) -> None:  # noqa: ASYNC109
    """``await services.until_idle(timeout)``."""
    await services.until_idle(timeout)
