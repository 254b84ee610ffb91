"""``Registry``: where the instances of services say they are alive, and are found.

``await open_registry(url)`` opens one (``memory://``, ``sqlite:///path``,
``nats://host:port``; see ``eventcore.registry.url``)::

    registry = await open_registry("sqlite:///var/lib/shop/registry.db")
    instance = Instance.of("payments", "http://10.0.0.5:8000", version="1.4.2")
    async with registry.register(instance, ttl=10.0):
        ...                                   # listed while the block runs
    await registry.discover("payments")       # the live instances
    await registry.services()                 # every service with a live instance
"""

from __future__ import annotations

from types import TracebackType

from eventcore.errors import DatabaseNotFound, InvalidInput, MissingDependency
from eventcore.instrumentation import Hooks
from eventcore.leases.protocol import check_ttl
from eventcore.registry.directory import Directory, MemoryDirectory
from eventcore.registry.instance import Instance
from eventcore.registry.registration import DEFAULT_TTL, MAX_TTL, Registration
from eventcore.registry.url import RegistryUrl
from eventcore.resilience import check_service

__all__ = ["Registry", "open_registry"]


class Registry:
    """A registry backend (a ``Directory``) with the checks every caller gets."""

    def __init__(self, directory: Directory, *, backend: str) -> None:
        self._directory = directory
        #: ``memory``, ``sqlite`` or ``nats``.
        self.backend = backend

    def register(
        self, instance: Instance, *, ttl: float = DEFAULT_TTL, hooks: Hooks | None = None
    ) -> Registration:
        """A ``Registration`` (a ``Worker``) that keeps ``instance`` listed while it
        runs, renewing it every ``ttl / 4`` seconds, and deregisters it when stopped.
        Run it in a task group, or ``async with`` it. A ``ttl`` that is not a number of
        seconds in (0, ``MAX_TTL``] is ``InvalidInput``. ``hooks``: where each renewal
        is reported (default: the process's hooks)."""
        if not isinstance(instance, Instance):
            raise TypeError(f"expected an Instance, got {type(instance).__name__}")
        ttl = check_ttl(ttl)
        if ttl > MAX_TTL:
            raise InvalidInput(f"ttl must be at most {MAX_TTL:g} seconds, got {ttl:g}")
        return Registration(self._directory, instance, ttl=ttl, backend=self.backend, hooks=hooks)

    async def discover(self, service: str) -> list[Instance]:
        """The live instances of ``service`` (``InvalidName`` if it cannot name one),
        by instance id; empty when it has none."""
        return await self._directory.live(check_service(service))

    async def services(self) -> list[str]:
        """Every service with at least one live instance, sorted."""
        return await self._directory.listed()

    async def aclose(self) -> None:
        """Close the backend's connection; idempotent. Registrations still running
        fail their next renewal with ``RegistryClosed``."""
        await self._directory.aclose()

    async def __aenter__(self) -> Registry:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()


async def open_registry(url: str, *, create: bool = True) -> Registry:
    """The registry ``url`` names. A malformed URL is ``InvalidUrl``; with
    ``create=False`` (for tools that only look) nothing is created and a registry that
    does not exist yet is ``DatabaseNotFound``. An unreachable server is
    ``RegistryUnavailable``; without nats-py a ``nats://`` URL is ``MissingDependency``."""
    parsed = RegistryUrl.parse(url)
    if parsed.backend == "memory":
        if not create:
            raise DatabaseNotFound(url, "a memory:// registry lives in the process that opened it")
        return Registry(MemoryDirectory(), backend="memory")
    if parsed.backend == "sqlite":
        from eventcore.registry.sqlite import SqliteDirectory

        return Registry(await SqliteDirectory.open(parsed, create=create), backend="sqlite")
    try:
        from eventcore.registry.nats import NatsDirectory
    except ImportError as error:
        raise MissingDependency.of(error, "nats:// registries") from error
    return Registry(await NatsDirectory.connect(parsed, create=create), backend="nats")
