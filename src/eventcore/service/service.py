"""``Service``: one service, declared in one place and run as one unit.

A service owns a store and publishes what it commits through its relay; it may accept
commands over HTTP (``eventcore serve``) and over the bus, subscribe to other services'
topics, run sagas and projections, and register itself for discovery. Declare it once::

    service = Service("bank", events=registry, commands=[OpenAccount, Deposit],
                      topics=TopicMap({...}), store="sqlite:///bank.db", bus="sqlite:///bus.db")
    service.subscribe("payments", handlers)
    service.project(balances, "sqlite:///views.db")

and run it: ``async with service:`` (started and ready inside the block, drained and
closed after it) or ``await service.run()`` (until ``stop()``, SIGTERM or SIGINT);
``eventcore serve`` adds the HTTP face.

Every worker is built when the service starts, from the store and bus it opened, and
runs under a ``Supervised`` that rebuilds it after a crash; the service's health (every
worker ready, taking work) goes to the hooks' ``service_health`` as it changes. Shutdown
(``aclose``) goes in
the order that loses nothing: close the intake (new work gets ``ServiceDraining``) →
let admitted commands finish (bounded by ``grace``) → stop the workers that take work
(subscribers, command receivers, sagas, projections: each finishes what it holds and
keeps its checkpoint) → let the relay publish everything committed, then stop it →
deregister → close the bus and the store it opened.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import signal
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, Literal

from eventcore.command import Command
from eventcore.errors import WorkerStopped
from eventcore.events import EventRegistry
from eventcore.executor import Executor
from eventcore.instrumentation import Hooks, ServiceHealth, resolve
from eventcore.messaging.bus import Bus
from eventcore.messaging.commands import ResultOf
from eventcore.messaging.inbox import Handler
from eventcore.messaging.relay import Relay
from eventcore.messaging.topics import TopicMap
from eventcore.pipeline import CommandResult
from eventcore.projection import Projection
from eventcore.projection.target import Target
from eventcore.registry import Registry
from eventcore.retry import RetryPolicy
from eventcore.saga.definition import Saga
from eventcore.service import declared
from eventcore.service.config import (
    BUS_ENV,
    DEFAULT_COMMAND_TIMEOUT,
    DEFAULT_GRACE,
)
from eventcore.service.declared import Declared, Wiring, WorkerFactory
from eventcore.service.errors import InvalidService, UnknownCommand
from eventcore.service.intake import Intake
from eventcore.service.parts import Parts, open_parts
from eventcore.service.registration import Registrar
from eventcore.service.supervisor import DEFAULT_BACKOFF, Supervised, WorkerHealth
from eventcore.store import EventStore
from eventcore.types import Metadata

__all__ = ["Service", "ServiceState"]

logger = logging.getLogger("eventcore.service")

#: ``declared``: not started; ``starting``: workers run, not all ready; ``ready``;
#: ``draining``: taking no new work, finishing the rest; ``stopped``.
ServiceState = Literal["declared", "starting", "ready", "draining", "stopped"]

#: The order workers stop in: those that take work first, the relay (which publishes
#: what they committed) last.
_STOP_ORDER = ("intake", "relay")


class Service:
    """A service: its parts declared here, built and run by ``start``/``run``."""

    def __init__(
        self,
        name: str,
        *,
        events: EventRegistry,
        commands: Sequence[type[Command[Any]]] = (),
        bus_commands: Sequence[type[Command[Any]]]
        | Mapping[type[Command[Any]], ResultOf | None] = (),
        topics: TopicMap | None = None,
        store: str | EventStore | None = None,
        bus: str | Bus | None = None,
        registry: str | Registry | Registrar | None = None,
        version: str = "0",
        description: str = "",
        retry: RetryPolicy | None = None,
        hooks: Hooks | None = None,
        command_timeout: float = DEFAULT_COMMAND_TIMEOUT,
        grace: float = DEFAULT_GRACE,
        backoff: tuple[float, float] = DEFAULT_BACKOFF,
        max_relay_lag: int = 10_000,
        max_projection_lag: int = 100_000,
        authorize: Callable[[Any, str], bool | Awaitable[bool]] | None = None,
    ) -> None:
        if not name or not name.strip():
            raise InvalidService("a service needs a name")
        if not (math.isfinite(command_timeout) and command_timeout > 0) or not (
            math.isfinite(grace) and grace >= 0
        ):
            raise InvalidService(
                f"command_timeout must be a positive number of seconds and grace one not"
                f" negative, got {command_timeout} and {grace}"
            )
        self.name = name
        self.events = events
        self.version = version
        self.description = description
        self.topics = topics
        self.command_timeout = command_timeout
        self.grace = grace
        self.max_relay_lag = max_relay_lag
        self.max_projection_lag = max_projection_lag
        #: Who may send which command over HTTP: ``(principal, command name) -> bool``
        #: (``eventcore.web.auth.Authorizer``); None lets every authenticated caller.
        self.authorize = authorize
        self.instance = uuid.uuid4().hex[:12]
        #: The address registered for this instance (``eventcore serve`` sets it).
        self.address = ""
        self._commands: dict[str, type[Command[Any]]] = {}
        for command in commands:
            self._accept(command, self._commands)
        self._bus_commands = bus_commands
        self.bus_command_types: dict[str, type[Command[Any]]] = {}
        for command in bus_commands:
            self._accept(command, self.bus_command_types)
        self._store_given = store
        self._bus_given = bus
        self._registry_given = registry
        self._retry = retry
        self._hooks = hooks
        self._backoff = backoff
        self._declared: list[Declared] = []
        self._targets: dict[str, Target] = {}
        self._state: ServiceState = "declared"
        self._intake = Intake(name)
        self._workers: list[tuple[str, Supervised]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._parts: Parts | None = None
        self._registrar: Registrar | None = None
        self._store: EventStore | None = None
        self._bus: Bus | None = None
        self._executor: Executor | None = None
        self._started_at: float | None = None
        self._stop_requested = asyncio.Event()
        self._started = asyncio.Event()
        self._healthy: bool | None = None

    # --- declaring ---------------------------------------------------------------------

    def _accept(self, command: type[Command[Any]], into: dict[str, type[Command[Any]]]) -> None:
        if not (isinstance(command, type) and issubclass(command, Command)):
            raise InvalidService(f"{command!r} is not a Command class")
        name = command.__name__
        if name in into and into[name] is not command:
            raise InvalidService(f"two commands named {name!r} in service {self.name!r}")
        into[name] = command

    def _declare(self, recipe: Declared) -> None:
        if self._state != "declared":
            raise InvalidService(f"service {self.name!r} is already started: declare before")
        if any(each.name == recipe.name for each in self._declared):
            raise InvalidService(f"two workers named {recipe.name!r} in {self.name!r}")
        self._declared.append(recipe)

    def subscribe(
        self,
        topic: str,
        handlers: Mapping[Any, Handler] | Sequence[Handler],
        *,
        group: str | None = None,
        **options: Any,
    ) -> None:
        """Handle ``topic``'s events with ``handlers`` in consumer group ``group`` (by
        default the service's name); ``options`` go to ``Subscriber``."""
        self._declare(declared.subscription(topic, handlers, group or self.name, options))

    @property
    def consumed_topics(self) -> list[str]:
        """The topics the service subscribes to (for its AsyncAPI contract)."""
        return [each.topic for each in self._declared if each.topic is not None]

    def saga(self, *sagas: Saga[Any], **options: Any) -> None:
        """Run ``sagas`` in one ``SagaWorker`` of this service; ``options`` go to it."""
        self._declare(declared.sagas(sagas, options))

    def project(
        self,
        projection: Projection,
        target: Target | str,
        *,
        singleton: bool = False,
        **options: Any,
    ) -> None:
        """Keep ``projection`` up to date in ``target`` (an opened target, or a URL the
        service opens and closes) from this service's store. ``singleton`` asks for
        one runner across the service's instances (through a lease, when leadership
        is available)."""
        self._declare(declared.projection(projection, target, singleton, options))

    def worker(self, name: str, make: WorkerFactory, *, singleton: bool = False) -> None:
        """Run any other ``Worker`` that ``make`` builds from the service's parts."""
        self._declare(Declared(name, "worker", make, singleton=singleton))

    def configure(
        self,
        *,
        store: str | None = None,
        bus: str | None = None,
        registry: str | None = None,
    ) -> None:
        """Replace the declared store, bus or registry URL (the command line's flags)."""
        if self._state != "declared":
            raise InvalidService(f"service {self.name!r} is already started: configure before")
        if store is not None:
            self._store_given = store
        if bus is not None:
            self._bus_given = bus
        if registry is not None:
            self._registry_given = registry

    def use_default_hooks(self) -> None:
        """Report to Prometheus (so ``/metrics`` has the commands, appends, publishes…)
        when the service was given no hooks and ``prometheus-client`` is installed."""
        if self._hooks is not None:
            return
        try:
            from eventcore.observability import metrics_hooks
        except ImportError:
            return
        self._hooks = metrics_hooks()

    # --- what it is --------------------------------------------------------------------

    @property
    def command_types(self) -> Mapping[str, type[Command[Any]]]:
        """The commands accepted over HTTP, by name."""
        return self._commands

    @property
    def state(self) -> ServiceState:
        if self._state == "starting" and all(
            supervised.status().ready for _, supervised in self._workers
        ):
            self._state = "ready"
        return self._state

    @property
    def intake(self) -> Intake:
        return self._intake

    @property
    def store(self) -> EventStore:
        if self._store is None:
            raise InvalidService(f"service {self.name!r} is not started")
        return self._store

    @property
    def bus(self) -> Bus | None:
        return self._bus

    @property
    def started_at(self) -> float | None:
        return self._started_at

    def workers(self) -> list[WorkerHealth]:
        """Every supervised worker's health, in start order."""
        return [supervised.status() for _, supervised in self._workers]

    def registrations(self) -> list[Any]:
        """How this instance's registrations stand, when its registry says
        (``eventcore.registry.Registrar.statuses``); else []."""
        statuses = getattr(self._registrar, "statuses", None)
        return list(statuses()) if callable(statuses) else []

    def relay(self) -> Relay | None:
        """The relay running now (None without a bus, before start, between crashes)."""
        for _, supervised in self._workers:
            if supervised.kind == "relay":
                current = supervised.current
                return current if isinstance(current, Relay) else None
        return None

    # --- running -----------------------------------------------------------------------

    async def start(self, *, register: bool = True) -> None:
        """Open the store and bus, build every worker and start them; returns without
        waiting for them to be ready (``ready()`` does). On an error, whatever was
        opened is closed again. ``register=False`` leaves registering in the service
        registry to a later ``register()`` (once the address is known)."""
        if self._state != "declared":
            raise InvalidService(f"service {self.name!r} was started already")
        self._state = "starting"
        try:
            await self._open()
            self._build()
        except BaseException:
            await self._close_resources()
            self._state = "stopped"
            raise
        finally:
            self._started.set()
        self._started_at = time.time()
        for _, supervised in self._workers:
            self._tasks.append(asyncio.create_task(supervised.run(), name=supervised.name))
        self._report_health()
        if register:
            await self.register()

    async def ready(self) -> None:
        """Return once the service has started and every worker is ready (then stays
        so; crashes show in health). ``WorkerStopped`` if it stopped, or failed to
        start, first."""
        await self._started.wait()
        if self._state == "stopped":
            raise WorkerStopped(f"service {self.name!r}")
        await asyncio.gather(*(supervised.ready() for _, supervised in self._workers))
        if self._state == "starting":
            self._state = "ready"

    async def _open(self) -> None:
        self._parts = parts = await open_parts(
            self.name,
            store=self._store_given,
            bus=self._bus_given,
            registry=self._registry_given,
            target_urls={
                each.name.removeprefix("projection:"): each.target_url
                for each in self._declared
                if each.target_url is not None
            },
        )
        self._store, self._bus, self._registrar = parts.store, parts.bus, parts.registrar
        self._targets = parts.targets
        self._executor = Executor(self._store, self.events, retry=self._retry, hooks=self._hooks)

    def _wiring(self) -> Wiring:
        assert self._store is not None
        assert self._executor is not None
        return Wiring(
            service=self.name,
            instance=self.instance,
            store=self._store,
            bus=self._bus,
            executor=self._executor,
            events=self.events,
            topics=self.topics,
            hooks=self._hooks,
            targets=self._targets,
        )

    def _build(self) -> None:
        wiring = self._wiring()
        recipes = [
            *([declared.receiver(self._bus_commands)] if self.bus_command_types else []),
            *self._declared,
            *([declared.relay()] if self.topics is not None else []),
        ]
        wanting = [each.name for each in recipes if each.needs_bus]
        if wiring.bus is None and wanting:
            raise InvalidService(
                f"service {self.name!r} needs a bus for {', '.join(wanting)}:"
                f" give bus=, --bus or {BUS_ENV}"
            )
        for recipe in recipes:
            supervised = Supervised(
                recipe.name,
                recipe.kind,
                functools.partial(recipe.make, wiring),
                backoff=self._backoff,
                singleton=recipe.singleton,
                on_change=self._report_health,
            )
            self._workers.append(("relay" if recipe.kind == "relay" else "intake", supervised))

    def _report_health(self) -> None:
        """Tell the hooks (``eventcore_service_health``) when the service turns healthy
        (started, every worker ready, taking work) or stops being so."""
        healthy = self._state in ("starting", "ready") and all(
            supervised.status().ready for _, supervised in self._workers
        )
        if healthy == self._healthy:
            return
        self._healthy = healthy
        hooks = resolve(self._hooks, "service_health")
        if hooks is not None:
            hooks.service_health(ServiceHealth(service=self.name, healthy=healthy))

    async def register(self) -> None:
        """Register this instance (name, instance id, ``address``, version) in the
        service registry, if the service has one. Called once started, so discovery
        never lists an instance that has not begun; a registry that fails is logged and
        the service runs on (its registry's TTL is the backstop)."""
        if self._registrar is None:
            return
        try:
            await self._registrar.register(
                self.name,
                self.instance,
                self.address,
                version=self.version,
                metadata={"commands": ",".join(sorted(self._commands))},
            )
        except Exception as error:
            # Discovery is not the service's work: it serves on, unlisted until restarted.
            logger.warning("service %s could not register: %s", self.name, error)

    async def _deregister(self) -> None:
        if self._registrar is None:
            return
        try:
            await self._registrar.deregister(self.name, self.instance)
        except Exception as error:
            # The registry's TTL removes the instance anyway.
            logger.warning("service %s could not deregister: %s", self.name, error)

    async def execute(
        self,
        command: Command[Any],
        *,
        idempotency_key: str | None = None,
        actor: str | None = None,
        metadata: Metadata | None = None,
    ) -> CommandResult:
        """Run ``command`` as intake: refused with ``ServiceDraining`` once draining,
        bounded by the service's command timeout."""
        with self._intake.admit():
            if self._executor is None:
                raise InvalidService(f"service {self.name!r} is not started")
            if actor is not None:
                given = metadata or Metadata()
                metadata = Metadata(
                    correlation_id=given.correlation_id,
                    causation_id=given.causation_id,
                    traceparent=given.traceparent,
                    tracestate=given.tracestate,
                    actor=actor,
                    extra=given.extra,
                )
            return await self._executor.execute(
                command,
                metadata=metadata,
                idempotency_key=idempotency_key,
                timeout=self.command_timeout,
            )

    def command_named(self, name: str) -> type[Command[Any]]:
        found = self._commands.get(name)
        if found is None:
            raise UnknownCommand(self.name, name)
        return found

    def stop(self) -> None:
        """Ask ``run()`` to drain and return (SIGTERM and SIGINT call this)."""
        self._stop_requested.set()

    async def run(self) -> None:
        """Start, run until ``stop()``, SIGTERM or SIGINT, then drain and close (a
        service without an HTTP face; ``eventcore serve`` runs one with)."""
        loop = asyncio.get_running_loop()
        handled: list[signal.Signals] = []
        for sig in (signal.SIGTERM, signal.SIGINT):
            # Only the main thread's loop can take signals; elsewhere stop() is the way.
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, self.stop)
                handled.append(sig)
        try:
            await self.start()
            await self._stop_requested.wait()
        finally:
            for sig in handled:
                loop.remove_signal_handler(sig)
            await self.aclose()

    async def drain(self) -> bool:
        """Take no new work and wait (up to ``grace``) for admitted work to finish;
        True if it all did."""
        if self._state in ("declared", "stopped"):
            return True
        self._state = "draining"
        self._intake.close()
        self._report_health()
        finished = await self._intake.drained(self.grace)
        if not finished:
            logger.warning(
                "service %s: %d commands still running after %.1fs",
                self.name,
                self._intake.in_flight,
                self.grace,
            )
        return finished

    async def aclose(self) -> None:
        """Drain, stop every worker in order (the relay publishes what is committed
        first), deregister and close what the service opened. Idempotent."""
        if self._state == "stopped":
            return
        try:
            await self.drain()
            for group in _STOP_ORDER:
                if group == "relay":
                    await self._flush_relay()
                await self._stop_group(group)
        finally:
            await self._deregister()
            await self._close_resources()
            self._state = "stopped"

    async def _flush_relay(self) -> None:
        relay = self.relay()
        if relay is None or self._store is None:
            return
        try:
            async with asyncio.timeout(self.grace):
                await relay.published(await self._store.last_position())
        except TimeoutError:
            logger.warning(
                "service %s: relay did not publish everything within %.1fs;"
                " the next start publishes the rest",
                self.name,
                self.grace,
            )
        except Exception as error:
            # The checkpoint is where the bus last took it: the next start resumes there.
            logger.warning("service %s: relay flush failed: %s", self.name, error)

    async def _stop_group(self, group: str) -> None:
        chosen = [
            (supervised, task)
            for (each, supervised), task in zip(self._workers, self._tasks, strict=False)
            if each == group
        ]
        for supervised, _ in chosen:
            supervised.stop()
        tasks = [task for _, task in chosen]
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=max(self.grace, 0.1))
        for task in pending:
            logger.warning("service %s: worker %s did not stop in time", self.name, task.get_name())
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _close_resources(self) -> None:
        for task in self._tasks:
            if not task.done():
                task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._parts is not None:
            await self._parts.aclose()

    async def __aenter__(self) -> Service:
        await self.start()
        try:
            await self.ready()
        except BaseException:
            await self.aclose()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()
