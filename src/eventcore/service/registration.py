"""The seam between a service and a service registry: what ``Service`` needs of one.

A registry is given as a URL (opened with ``eventcore.registry.open_registry``), as an
opened ``eventcore.registry.Registry``, or as any object with ``register`` and
``deregister`` as below (``eventcore.registry.Registrar`` is one). Heartbeats are the
registry's business: it keeps the instance listed until deregistered, or until the
process dies and its TTL runs out.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol, runtime_checkable

from eventcore.registry import Registrar as CallRegistrar
from eventcore.registry import Registry, open_registry

__all__ = ["Registrar", "registrar_of"]


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


async def registrar_of(
    registry: str | Registry | Registrar,
) -> tuple[Registrar, Callable[[], Awaitable[None]] | None]:
    """The registrar of ``registry``, and how to close what was opened for it (None
    when the caller owns it: a registry given opened is theirs to close)."""
    if isinstance(registry, str):
        opened = CallRegistrar(await open_registry(registry))
        return opened, opened.aclose
    if isinstance(registry, Registry):
        return CallRegistrar(registry), None
    return registry, None
