"""``Registration``: one instance on the registry for as long as it runs — a ``Worker``.

``run()`` registers the instance, is ready once it is listed, renews it every
``ttl * RENEWAL_FRACTION`` seconds (the lease primitive's schedule) and, when stopped,
deregisters it, so the instance leaves the listing at once rather than after its TTL. A
process killed without stopping it simply stops renewing: the instance drops out when
its TTL runs out.

Each attempt is reported to the instrumentation hooks (``registration_renewed``).
An outage (``RegistryUnavailable``) pauses it: the registration is tried again at the
next renewal and the error kept in ``status()``; if the outage outlasts the TTL the
instance drops out of the listing until a renewal gets through, which is what should
happen to an instance nobody can see. A closed registry ends ``run`` with
``RegistryClosed``.

``async with registry.register(instance) as registration:`` runs it for the length of a
block, for code that does not run its workers in a task group of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from types import TracebackType
from typing import Final

import msgspec

from eventcore.errors import RegistryClosed, RegistryUnavailable, WorkerStopped
from eventcore.instrumentation import Hooks, RegistrationRenewed, resolve
from eventcore.leases import RENEWAL_FRACTION
from eventcore.lifecycle import Readiness, stopped_within
from eventcore.registry.directory import Directory
from eventcore.registry.instance import Instance

__all__ = ["DEFAULT_TTL", "MAX_TTL", "Registration", "RegistrationStatus"]

_logger = logging.getLogger(__name__)

#: Seconds an instance stays listed without a heartbeat, unless ``register`` says otherwise.
DEFAULT_TTL: Final = 10.0
#: The longest TTL a registration may ask for (the NATS bucket keeps keys an hour).
MAX_TTL: Final = 600.0


class RegistrationStatus(msgspec.Struct, frozen=True, kw_only=True):
    """What a ``Registration`` has done."""

    instance: Instance
    ttl: float
    #: Listed now, as far as this process knows: registered, not yet deregistered, and
    #: renewed within the last ``ttl`` seconds.
    registered: bool
    #: Successful registrations and renewals so far.
    renewals: int
    #: The outage that made the last attempt fail, if it failed.
    last_error: str | None


class Registration:
    """Keeps ``instance`` registered in ``directory`` while it runs; see the module."""

    def __init__(
        self,
        directory: Directory,
        instance: Instance,
        *,
        ttl: float,
        backend: str = "memory",
        hooks: Hooks | None = None,
    ) -> None:
        self._directory = directory
        self._backend = backend
        self._hooks = resolve(hooks, "registration_renewed")
        self._instance = instance
        self._ttl = ttl
        self._stopping = asyncio.Event()
        self._readiness = Readiness(
            f"the registration of {instance.service}/{instance.instance_id}"
        )
        self._renewals = 0
        self._renewed_at: float | None = None
        self._withdrawn = False
        self._last_error: str | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def instance(self) -> Instance:
        return self._instance

    async def run(self) -> None:
        if self._stopping.is_set():
            self._readiness.stopped()
            return
        try:
            while not self._stopping.is_set():
                await self._renew()
                if await stopped_within(self._stopping, self._ttl * RENEWAL_FRACTION):
                    break
        except BaseException as error:
            self._readiness.fail(error)
            raise
        finally:
            self._readiness.stopped()
        await self._withdraw()

    async def _renew(self) -> None:
        started = time.monotonic()
        try:
            await self._directory.announce(self._instance, self._ttl)
        except RegistryUnavailable as error:
            self._report(error, started)
            self._last_error = str(error)
            _logger.warning(
                "registering %s/%s failed: %s",
                self._instance.service,
                self._instance.instance_id,
                error,
            )
            return
        self._report(None, started)
        self._renewals += 1
        self._renewed_at = time.monotonic()
        self._last_error = None
        self._readiness.set()

    def _report(self, error: BaseException | None, started: float) -> None:
        if self._hooks is not None:
            self._hooks.registration_renewed(
                RegistrationRenewed(
                    service=self._instance.service,
                    instance_id=self._instance.instance_id,
                    backend=self._backend,
                    error=error,
                    seconds=time.monotonic() - started,
                )
            )

    async def _withdraw(self) -> None:
        if self._renewed_at is None:
            return
        try:
            await self._directory.withdraw(self._instance)
        except (RegistryUnavailable, RegistryClosed) as error:
            # Nothing more to do: the TTL takes it off the listing.
            _logger.warning(
                "deregistering %s/%s failed (its TTL will): %s",
                self._instance.service,
                self._instance.instance_id,
                error,
            )
            return
        self._withdrawn = True

    def stop(self) -> None:
        self._stopping.set()

    def status(self) -> RegistrationStatus:
        renewed = self._renewed_at
        return RegistrationStatus(
            instance=self._instance,
            ttl=self._ttl,
            registered=(
                renewed is not None
                and not self._withdrawn
                and time.monotonic() - renewed < self._ttl
            ),
            renewals=self._renewals,
            last_error=self._last_error,
        )

    async def ready(self) -> None:
        await self._readiness.wait()

    async def __aenter__(self) -> Registration:
        self._task = asyncio.create_task(self.run())
        readying = asyncio.ensure_future(self.ready())
        await asyncio.wait({self._task, readying}, return_when=asyncio.FIRST_COMPLETED)
        if not readying.done():
            readying.cancel()
            await asyncio.gather(readying, return_exceptions=True)
            self._task.result()  # raises what ended the run
            raise WorkerStopped(f"the registration of {self._instance.service}")
        try:
            readying.result()
        except BaseException:
            self.stop()
            with contextlib.suppress(Exception):
                await self._task
            raise
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
        if self._task is not None:
            await self._task
