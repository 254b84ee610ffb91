"""``NatsDirectory``: the registry in the NATS JetStream key-value bucket
``{namespace}_registry``, for services on several machines (``nats://host:port``).

Keys: ``{service}.members`` is the lease primitive's (``KvLeases``: the live instances
of the service, each with its expiry); ``{service}.i.{instance_id}`` holds the
instance's ``Record``, rewritten at every heartbeat. The bucket's age limit
(``MAX_AGE``) is the server-side TTL that removes keys nobody rewrites any more: a
killed instance's record, if no reader swept it first. Needs nats-py.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from typing import Final

import msgspec
import nats
import nats.errors
from nats.aio.client import Client
from nats.js.client import JetStreamContext
from nats.js.kv import KeyValue

from eventcore._nats.errors import translated
from eventcore._nats.kv import entries, find_bucket, open_bucket
from eventcore.errors import (
    BusClosed,
    BusError,
    BusRejected,
    DatabaseNotFound,
    RegistryClosed,
    RegistryUnavailable,
)
from eventcore.leases.nats import KvLeases
from eventcore.registry.directory import Record, record_decoder
from eventcore.registry.instance import Instance
from eventcore.registry.url import RegistryUrl

__all__ = ["MAX_AGE", "NatsDirectory"]

#: Seconds the bucket keeps a key nobody rewrites; longer than any registration's TTL.
MAX_AGE: Final = 3600.0
_CONNECT_TIMEOUT: Final = 5.0
_CALL_TIMEOUT: Final = 5.0


@contextlib.contextmanager
def _registry_errors(doing: str) -> Iterator[None]:
    """nats-py's errors as the registry's: closed, or unavailable (try again)."""
    try:
        with translated(doing):
            yield
    except BusClosed as error:
        raise RegistryClosed() from error
    except (BusError, BusRejected) as error:
        raise RegistryUnavailable(str(error)) from error


async def _ignore_error(error: Exception) -> None:
    """nats-py reports connection trouble here as well as to the call that met it."""


class NatsDirectory:
    """Open with ``await NatsDirectory.connect(RegistryUrl.parse("nats://host:4222"))``."""

    def __init__(self, nc: Client, js: JetStreamContext, kv: KeyValue, bucket: str) -> None:
        self._nc = nc
        self._js = js
        self._kv = kv
        self._bucket = bucket
        self._leases = KvLeases(kv)
        self._closed = False

    @classmethod
    async def connect(cls, url: RegistryUrl, *, create: bool = True) -> NatsDirectory:
        """Connect and open the bucket; ``create=False`` creates nothing (a namespace
        no registry has used is ``DatabaseNotFound``)."""
        server = url.raw.partition("?")[0]
        try:
            async with asyncio.timeout(_CONNECT_TIMEOUT):
                nc = await nats.connect(
                    servers=[server],
                    name="eventcore-registry",
                    connect_timeout=2.0,
                    allow_reconnect=True,
                    max_reconnect_attempts=2,
                    reconnect_time_wait=0.25,
                    error_cb=_ignore_error,
                )
        except (TimeoutError, OSError, nats.errors.Error) as error:
            # The location only: the URL may carry credentials.
            raise RegistryUnavailable(
                f"cannot reach NATS at {url.location}: {type(error).__name__}"
            ) from error
        # Once connected, reconnect for ever: a server restart must not end the registry.
        nc.options["max_reconnect_attempts"] = -1
        try:
            js = nc.jetstream(timeout=_CALL_TIMEOUT)
            bucket = f"{url.namespace}_registry"
            with _registry_errors("opening the registry's bucket"):
                if create:
                    kv = await open_bucket(js, bucket, max_age=MAX_AGE)
                else:
                    found = await find_bucket(js, bucket)
                    if found is None:
                        raise DatabaseNotFound(
                            url.location, f"no registry in namespace {url.namespace!r}"
                        )
                    kv = found
        except BaseException:
            await nc.close()
            raise
        return cls(nc, js, kv, bucket)

    def _check_open(self) -> None:
        if self._closed:
            raise RegistryClosed()

    async def announce(self, instance: Instance, ttl: float) -> None:
        self._check_open()
        with _registry_errors("registering an instance"):
            await self._leases.heartbeat(instance.service, instance.instance_id, ttl)
            record = Record(instance, time.time(), ttl)
            await self._kv.put(_key(instance), msgspec.json.encode(record))

    async def withdraw(self, instance: Instance) -> None:
        self._check_open()
        with _registry_errors("deregistering an instance"):
            await self._leases.leave(instance.service, instance.instance_id)
            await self._kv.delete(_key(instance))

    async def live(self, service: str) -> list[Instance]:
        self._check_open()
        with _registry_errors("looking up a service's instances"):
            members = set(await self._leases.members(service))
            found = await entries(self._js, self._bucket, f"{service}.i.*")
            now = time.time()
            instances: list[Instance] = []
            for entry in found:
                try:
                    record = record_decoder.decode(entry.value or b"")
                except msgspec.DecodeError:
                    continue  # written by a newer eventcore, or damaged
                if record.instance.instance_id in members:
                    instances.append(record.instance)
                elif record.stale(now):
                    # Best effort: the bucket's age limit removes it otherwise.
                    with contextlib.suppress(Exception):
                        await self._kv.delete(entry.key, last=entry.revision)
        return sorted(instances, key=lambda i: i.instance_id)

    async def listed(self) -> list[str]:
        self._check_open()
        with _registry_errors("listing services"):
            found = await entries(self._js, self._bucket, "*.members")
            services = sorted(entry.key.partition(".")[0] for entry in found)
            return [s for s in services if await self._leases.members(s)]

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            with contextlib.suppress(Exception):
                await self._nc.close()


def _key(instance: Instance) -> str:
    return f"{instance.service}.i.{instance.instance_id}"
