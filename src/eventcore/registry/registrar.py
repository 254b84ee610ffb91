"""``Registrar``: register and deregister by call, for a runtime that owns no task group
of the registry's — ``await registrar.register(service, instance_id, address, ...)``
when the service has started, ``await registrar.deregister(service, instance_id)``
when it drains.

Each registration is still a ``Registration`` (a ``Worker``) underneath, run here in a
task of its own: it heartbeats until deregistered, and a killed process drops out when
its TTL runs out. ``register`` returns once the instance is listed. If the registry
cannot be reached, it raises ``RegistryUnavailable`` after ``wait`` seconds but keeps
trying in the background, so the instance is listed as soon as the registry answers
(``statuses()`` says how each stands); ``deregister`` or ``aclose`` ends that too.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping

from eventcore.errors import RegistryUnavailable
from eventcore.instrumentation import Hooks
from eventcore.registry.instance import Instance
from eventcore.registry.registration import DEFAULT_TTL, Registration, RegistrationStatus
from eventcore.registry.registry import Registry

__all__ = ["Registrar"]


class Registrar:
    """Registrations of ``registry`` made and ended by call; closing it deregisters
    every instance still registered and closes the registry."""

    def __init__(
        self,
        registry: Registry,
        *,
        ttl: float = DEFAULT_TTL,
        wait: float | None = None,
        hooks: Hooks | None = None,
    ) -> None:
        self.registry = registry
        self._ttl = ttl
        self._wait = ttl if wait is None else wait
        self._hooks = hooks
        self._running: dict[tuple[str, str], tuple[Registration, asyncio.Task[None]]] = {}

    async def register(
        self,
        service: str,
        instance: str,
        address: str,
        *,
        version: str = "",
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        """List ``instance`` of ``service`` at ``address`` until deregistered (again:
        replace what it said). Bad input raises ``InvalidName`` / ``InvalidUrl`` /
        ``InvalidInstance`` and registers nothing."""
        made = Instance.of(
            service, address, instance_id=instance, version=version, metadata=metadata
        )
        registration = self.registry.register(made, ttl=self._ttl, hooks=self._hooks)
        await self.deregister(service, instance)
        task = asyncio.create_task(
            registration.run(), name=f"eventcore-registration:{service}/{instance}"
        )
        self._running[(service, instance)] = (registration, task)
        readying = asyncio.ensure_future(registration.ready())
        try:
            await asyncio.wait(
                {readying, task}, timeout=self._wait, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            if not readying.done():
                readying.cancel()
            await asyncio.gather(readying, return_exceptions=True)
        if task.done():
            del self._running[(service, instance)]
            task.result()  # what ended it before it was listed (RegistryClosed, a defect)
        if not readying.cancelled() and readying.exception() is None:
            return
        reason = registration.status().last_error or "no answer yet"
        raise RegistryUnavailable(
            f"{service}/{instance} is not registered yet ({reason}); still trying"
        )

    async def deregister(self, service: str, instance: str) -> None:
        """Stop heartbeating ``instance`` and take it off the listing (nothing if it is
        not registered here)."""
        running = self._running.pop((service, instance), None)
        if running is None:
            return
        registration, task = running
        registration.stop()
        # A renewal that failed for good already ended it; its error was logged there.
        with contextlib.suppress(Exception):
            await task

    def statuses(self) -> list[RegistrationStatus]:
        """How each registration made here stands, by service and instance id."""
        return [self._running[key][0].status() for key in sorted(self._running)]

    async def aclose(self) -> None:
        """Deregister everything still registered here, then close the registry."""
        for service, instance in list(self._running):
            await self.deregister(service, instance)
        await self.registry.aclose()
