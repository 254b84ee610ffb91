"""What a service opens when it starts: its store, its bus, its registry and the
projection targets given as URLs — ``open_parts`` — and closes when it stops.

Where each comes from: the object or URL the service was given, else the
``EVENTCORE_STORE`` / ``EVENTCORE_BUS`` / ``EVENTCORE_REGISTRY`` variable. Every URL is
parsed before anything is opened, so a mistyped bus never leaves a new store behind it;
whatever was opened before a failure is closed again. Objects the service was given are
the caller's to close; only what was opened here is closed by ``Parts.aclose``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from eventcore.messaging import open_bus
from eventcore.messaging.bus import Bus
from eventcore.messaging.url import BusUrl
from eventcore.projection import open_target
from eventcore.projection.target import Target
from eventcore.registry import Registry, RegistryUrl
from eventcore.service.config import BUS_ENV, REGISTRY_ENV, STORE_ENV, setting
from eventcore.service.errors import InvalidService
from eventcore.service.registration import Registrar, registrar_of
from eventcore.store import EventStore, open_store
from eventcore.store.url import StoreUrl

__all__ = ["Parts", "open_parts"]

logger = logging.getLogger("eventcore.service")


@dataclass
class Parts:
    store: EventStore
    bus: Bus | None
    #: Where the service registers, or None when it registers nowhere.
    registrar: Registrar | None
    #: Projection targets opened from URLs, by projection name.
    targets: dict[str, Target]
    owned: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    async def aclose(self) -> None:
        """Close what was opened here, last opened first; a failure is logged and the
        rest are closed regardless. Idempotent."""
        await _close_all(self.owned)


async def _close_all(owned: list[Callable[[], Awaitable[None]]]) -> None:
    while owned:
        closing = owned.pop()
        try:
            await closing()
        # Close the rest regardless: one part that fails to close must not keep others open.
        except Exception as error:
            logger.warning("closing a service's part failed: %s", error)


async def open_parts(
    service: str,
    *,
    store: str | EventStore | None,
    bus: str | Bus | None,
    registry: str | Registry | Registrar | None,
    target_urls: Mapping[str, str],
) -> Parts:
    store = store or setting(None, STORE_ENV)
    if store is None:
        raise InvalidService(
            f"service {service!r} has no store: give store=, --store or {STORE_ENV}"
        )
    bus = bus or setting(None, BUS_ENV)
    registry = registry or setting(None, REGISTRY_ENV)
    if isinstance(store, str):
        StoreUrl.parse(store)
    if isinstance(bus, str):
        BusUrl.parse(bus)
    if isinstance(registry, str):
        RegistryUrl.parse(registry)
    owned: list[Callable[[], Awaitable[None]]] = []
    try:
        registrar: Registrar | None = None
        if registry is not None:
            registrar, closing = await registrar_of(registry)
            if closing is not None:
                owned.append(closing)
        if isinstance(store, str):
            store = await open_store(store)
            owned.append(store.aclose)
        if isinstance(bus, str):
            bus = await open_bus(bus)
            owned.append(bus.aclose)
        targets: dict[str, Target] = {}
        for name, url in target_urls.items():
            targets[name] = target = await open_target(url)
            owned.append(target.aclose)
    except BaseException:
        await _close_all(owned)
        raise
    return Parts(store=store, bus=bus, registrar=registrar, targets=targets, owned=owned)
