"""The message buses the conformance suite runs on: name → factory of a fresh bus.

A factory is an async context manager, ``backend.site(workdir, partitions=..,
lease_ttl=..)``, that makes a new, empty bus and yields ``connect``: each
``await connect()`` opens one more handle on that same bus, the way another process
would (memory: the same object; sqlite: ``open`` on the same file; nats: a new
connection with the same namespace). On exit every handle is closed and whatever the
bus created is removed (for nats, every stream and key-value bucket of the namespace).

The constructors each backend must offer (the tests need a short lease ``ttl``, which
the URL cannot carry; ``lease_ttl`` is seconds, default 10.0 everywhere):

* ``MemoryBus(partitions=N, lease_ttl=T)``
* ``SqliteBus.open(BusUrl.parse("sqlite:///dir/bus.db?partitions=N"), create=True, lease_ttl=T)``
* ``NatsBus.connect(BusUrl.parse("nats://127.0.0.1:4222?namespace=X&partitions=N"),
  lease_ttl=T)``

A backend whose module cannot be imported, or whose server cannot be reached, is
skipped with the reason; under ``CI=true`` it fails instead.

``backend.foreign(bus, topic, key, bodies)`` publishes as a producer other than
eventcore would, with whatever that backend lets it leave out: on NATS a plain
JetStream publish with no ``Nats-Msg-Id``; the memory and SQLite buses take messages
through ``publish`` only, which needs an id, so there it is a fresh one each.
"""

from __future__ import annotations

import importlib
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from eventcore.messaging.bus import Bus, OutgoingMessage, partition_of
from eventcore.messaging.url import BusUrl
from tests.backends import skip_or_fail

__all__ = [
    "BUSES",
    "NATS_URL",
    "BusBackend",
    "Connect",
    "drop_nats_namespace",
    "require_nats",
    "unavailable_reason",
]

#: ``await connect()`` → one more handle on the bus of a site.
Connect = Callable[[], Awaitable[Bus]]
#: ``site(workdir, *, partitions, lease_ttl)`` → an async context manager of ``connect``.
SiteFactory = Callable[..., AbstractAsyncContextManager[Connect]]
#: ``await foreign(bus, topic, key, bodies)``: publish as another producer would.
Foreign = Callable[[Bus, str, str, Sequence[bytes]], Awaitable[None]]


async def _with_fresh_ids(bus: Bus, topic: str, key: str, bodies: Sequence[bytes]) -> None:
    await bus.publish(
        [OutgoingMessage(topic, f"foreign-{uuid.uuid4().hex}", key, body) for body in bodies]
    )


async def _without_ids(bus: Bus, topic: str, key: str, bodies: Sequence[bytes]) -> None:
    """Plain JetStream publishes, no ``Nats-Msg-Id``, to the partition ``key`` picks."""
    import nats

    url = BusUrl.parse(bus.url)
    # Joining a group creates the topic's stream, as eventcore would for its own publish.
    await (await bus.consumer(topic, "foreign-producer")).aclose()
    subject = f"{url.namespace}.{topic}.{partition_of(key, url.partitions)}"
    client = await nats.connect(NATS_URL, connect_timeout=5, allow_reconnect=False)
    try:
        js = client.jetstream()
        for body in bodies:
            await js.publish(subject, body)
    finally:
        await client.close()


#: The NATS server the nats bus runs against (``host:port``).
NATS_URL = os.environ.get("EVENTCORE_TEST_NATS_URL", "nats://127.0.0.1:4222")


@dataclass(frozen=True)
class BusBackend:
    name: str
    site: SiteFactory
    #: Modules that must import for this backend to run.
    requires: tuple[str, ...] = ()
    foreign: Foreign = _with_fresh_ids


def unavailable_reason(backend: BusBackend) -> str | None:
    """Why ``backend`` cannot run here, or ``None`` when it can."""
    for module in backend.requires:
        try:
            importlib.import_module(module)
        except ImportError as error:
            return f"{backend.name} bus unavailable: cannot import {module} ({error})"
    return None


@asynccontextmanager
async def _memory(workdir: Path, *, partitions: int, lease_ttl: float) -> AsyncIterator[Connect]:
    from eventcore.messaging.memory import MemoryBus

    bus = MemoryBus(partitions=partitions, lease_ttl=lease_ttl)

    async def connect() -> Bus:
        return bus

    try:
        yield connect
    finally:
        await bus.aclose()


@asynccontextmanager
async def _handles(open_one: Connect) -> AsyncIterator[Connect]:
    """``connect`` that remembers every handle it opened, and closes them all on exit."""
    opened: list[Bus] = []

    async def connect() -> Bus:
        bus = await open_one()
        opened.append(bus)
        return bus

    try:
        yield connect
    finally:
        for bus in reversed(opened):
            await bus.aclose()


@asynccontextmanager
async def _sqlite(workdir: Path, *, partitions: int, lease_ttl: float) -> AsyncIterator[Connect]:
    from eventcore.messaging.sqlite import SqliteBus  # type: ignore[import-not-found,unused-ignore]

    # ``workdir`` is absolute, so this is sqlite:///abs/path/bus.db.
    url = BusUrl.parse(f"sqlite://{workdir.as_posix()}/bus.db?partitions={partitions}")

    async def open_one() -> Bus:
        bus: Bus = await SqliteBus.open(url, create=True, lease_ttl=lease_ttl)
        return bus

    async with _handles(open_one) as connect:
        yield connect


async def drop_nats_namespace(namespace: str, server: str = NATS_URL) -> None:
    """Delete every JetStream stream and key-value bucket whose name starts with
    ``namespace`` (a bucket is the stream ``KV_<bucket>``)."""
    import nats

    client = await nats.connect(server, connect_timeout=5, allow_reconnect=False)
    try:
        # ``jsm()`` is the JetStream manager: stream administration, not messaging.
        manager = client.jsm()
        for info in await manager.streams_info():
            name = info.config.name or ""
            if name.startswith(namespace) or name.startswith(f"KV_{namespace}"):
                await manager.delete_stream(name)
    finally:
        await client.close()


async def require_nats() -> None:
    """Skip the test (fail it under ``CI=true``) when the NATS server does not answer."""
    reason = await _nats_reachable(NATS_URL)
    if reason is not None:
        skip_or_fail(reason, "every bus must run")


async def _nats_reachable(server: str) -> str | None:
    """None when the server answers, else why not."""
    import nats

    try:
        client = await nats.connect(
            server, connect_timeout=3, allow_reconnect=False, max_reconnect_attempts=0
        )
    except Exception as error:  # any failure to connect means: unreachable
        return f"nats bus unavailable: cannot reach {server} ({type(error).__name__}: {error})"
    await client.close()
    return None


@asynccontextmanager
async def _nats(workdir: Path, *, partitions: int, lease_ttl: float) -> AsyncIterator[Connect]:
    from eventcore.messaging.nats import NatsBus  # type: ignore[import-not-found,unused-ignore]

    await require_nats()
    namespace = f"t{uuid.uuid4().hex[:10]}"
    url = BusUrl.parse(f"{NATS_URL}?namespace={namespace}&partitions={partitions}")

    async def open_one() -> Bus:
        bus: Bus = await NatsBus.connect(url, lease_ttl=lease_ttl)
        return bus

    try:
        async with _handles(open_one) as connect:
            yield connect
    finally:
        await drop_nats_namespace(namespace)


BUSES: dict[str, BusBackend] = {
    "memory": BusBackend("memory", _memory),
    "sqlite": BusBackend("sqlite", _sqlite, requires=("eventcore.messaging.sqlite",)),
    "nats": BusBackend(
        "nats", _nats, requires=("nats", "eventcore.messaging.nats"), foreign=_without_ids
    ),
}
