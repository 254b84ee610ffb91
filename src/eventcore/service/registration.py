"""The seam between a service and a service registry: what ``Service`` needs of one.

A registry given as an object needs ``register`` and ``deregister`` as below (heartbeats
are the registry's own business: it keeps the instance's lease alive until deregistered
or until the process dies and the TTL runs out). A registry given as a URL is opened with
``eventcore.registry.open_registry`` when that package is installed with eventcore.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

from eventcore.service.errors import InvalidService

__all__ = ["Registrar", "open_registrar"]


@runtime_checkable
class Registrar(Protocol):
    async def register(
        self,
        service: str,
        instance: str,
        address: str,
        *,
        version: str,
        metadata: Mapping[str, str],
    ) -> None: ...

    async def deregister(self, service: str, instance: str) -> None: ...


async def open_registrar(url: str) -> Any:
    """The registry at ``url``; ``InvalidService`` when this build has none."""
    try:
        module = importlib.import_module("eventcore.registry")
    except ModuleNotFoundError as error:
        raise InvalidService(
            "a service registry URL was given, but this eventcore has no eventcore.registry"
        ) from error
    return await module.open_registry(url)
