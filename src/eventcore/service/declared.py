"""What a service runs, as declared: one ``Declared`` recipe per worker, and ``Wiring``,
the opened parts a recipe builds its worker from when the service starts.

A recipe is a name, a kind (what ``/status`` and the contracts call it) and a function
of the ``Wiring``; the service runs each recipe's workers under a ``Supervised``, which
calls the function again to rebuild a worker after a crash. The recipes here reuse the
messaging, saga and projection workers as they are: nothing is re-implemented.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from eventcore.command import Command
from eventcore.events import EventRegistry
from eventcore.executor import Executor
from eventcore.instrumentation import Hooks
from eventcore.lifecycle import Worker
from eventcore.messaging.bus import Bus
from eventcore.messaging.commands import CommandReceiver, ResultOf
from eventcore.messaging.inbox import Handler
from eventcore.messaging.relay import Relay
from eventcore.messaging.subscriber import Subscriber
from eventcore.messaging.topics import TopicMap
from eventcore.projection import Projection, ProjectionRunner, Source
from eventcore.projection.target import Target
from eventcore.saga.definition import Saga
from eventcore.saga.worker import SagaWorker
from eventcore.store import EventStore

__all__ = [
    "Declared",
    "Wiring",
    "WorkerFactory",
    "projection",
    "receiver",
    "relay",
    "sagas",
    "subscription",
]


@dataclass(frozen=True)
class Wiring:
    """What a worker factory is given: the service's opened parts. ``targets``: the
    projection targets the service opened from URLs, by projection name."""

    service: str
    instance: str
    store: EventStore
    bus: Bus | None
    executor: Executor
    events: EventRegistry
    topics: TopicMap | None
    hooks: Hooks | None
    targets: Mapping[str, Target]

    def needed_bus(self) -> Bus:
        # Recipes that need a bus are refused at start when there is none.
        if self.bus is None:
            raise RuntimeError(f"service {self.service!r} has no bus")  # pragma: no cover
        return self.bus


WorkerFactory = Callable[[Wiring], Worker[Any]]


@dataclass(frozen=True)
class Declared:
    """One worker of a service: how to build it from the ``Wiring``."""

    name: str
    kind: str
    make: WorkerFactory
    singleton: bool = False
    needs_bus: bool = False
    #: The topic a subscription consumes (for the service's AsyncAPI contract).
    topic: str | None = None
    #: A projection target to open at start (a URL), found in ``Wiring.targets``.
    target_url: str | None = None


def subscription(
    topic: str,
    handlers: Mapping[Any, Handler] | Sequence[Handler],
    group: str,
    options: Mapping[str, Any],
) -> Declared:
    def make(wiring: Wiring) -> Worker[Any]:
        return Subscriber(
            wiring.needed_bus(),
            topic,
            handlers,
            group=group,
            registry=wiring.events,
            hooks=wiring.hooks,
            **options,
        )

    return Declared(f"subscriber:{topic}:{group}", "subscriber", make, needs_bus=True, topic=topic)


def sagas(declared: Sequence[Saga[Any]], options: Mapping[str, Any]) -> Declared:
    def make(wiring: Wiring) -> Worker[Any]:
        return SagaWorker(
            wiring.store,
            wiring.needed_bus(),
            declared,
            service=wiring.service,
            registry=wiring.events,
            executor=wiring.executor,
            hooks=wiring.hooks,
            **options,
        )

    names = ",".join(type(saga).__name__ for saga in declared)
    return Declared(f"sagas:{names}", "saga", make, needs_bus=True)


def projection(
    view: Projection, target: Target | str, singleton: bool, options: Mapping[str, Any]
) -> Declared:
    name = view.name

    def make(wiring: Wiring) -> Worker[Any]:
        opened = target if not isinstance(target, str) else wiring.targets[name]
        return ProjectionRunner(
            view,
            opened,
            Source(wiring.service, wiring.store, wiring.events),
            hooks=wiring.hooks,
            **options,
        )

    return Declared(
        f"projection:{name}",
        "projection",
        make,
        singleton=singleton,
        target_url=target if isinstance(target, str) else None,
    )


def receiver(
    commands: Sequence[type[Command[Any]]] | Mapping[type[Command[Any]], ResultOf | None],
) -> Declared:
    def make(wiring: Wiring) -> Worker[Any]:
        return CommandReceiver(
            wiring.needed_bus(),
            wiring.executor,
            commands,
            service=wiring.service,
            hooks=wiring.hooks,
        )

    return Declared("commands", "receiver", make, needs_bus=True)


def relay() -> Declared:
    def make(wiring: Wiring) -> Worker[Any]:
        topics = wiring.topics or TopicMap()
        return Relay(
            wiring.store, wiring.needed_bus(), topics, service=wiring.service, hooks=wiring.hooks
        )

    return Declared("relay", "relay", make, needs_bus=True)
