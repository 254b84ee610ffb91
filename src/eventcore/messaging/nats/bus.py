"""``NatsBus``: the bus on NATS JetStream (``nats://host:port``), for several machines.

* A topic is a file-backed stream with one subject per partition (``_topics``).
* ``publish`` is pipelined: every message goes out at once with its id in the
  ``Nats-Msg-Id`` header (JetStream's de-duplication, within a ten-minute window), then
  the call waits for all the acknowledgements together.
* A consumer group reads each partition through a durable pull consumer
  (``_consumer``); partition leases, dead letters and relay checkpoints live in
  key-value buckets ``{namespace}_leases``, ``{namespace}_deadletters`` (with
  ``{namespace}_deadletter_bodies`` for the bodies of letters too large for one value)
  and ``{namespace}_checkpoints``.
* The connection reconnects for ever; while the server is away, a call gives up after
  a few seconds with ``BusUnavailable`` and the same bus works again once it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import zlib
from collections.abc import Sequence

import msgspec
import nats
from nats.aio.client import Client
from nats.js.client import JetStreamContext
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from eventcore._nats.connect import connect
from eventcore._nats.errors import translated
from eventcore._nats.kv import find_bucket, key_token, open_bucket
from eventcore.errors import BusClosed, BusUnavailable, DatabaseNotFound, InvalidInput
from eventcore.leases.nats import KvLeases
from eventcore.messaging._backend import BusFront
from eventcore.messaging.bus import OutgoingMessage
from eventcore.messaging.nats._consumer import NatsConsumer
from eventcore.messaging.nats._deadletters import KvDeadLetterBox
from eventcore.messaging.nats._publisher import Publisher
from eventcore.messaging.nats._topics import TopicStreams
from eventcore.messaging.url import BusUrl
from eventcore.redaction import redact
from eventcore.store.checkpoint import Checkpoint

__all__ = ["NatsBus"]

#: Seconds a publish (or any call) waits for the server before ``BusUnavailable``.
_CALL_TIMEOUT = 5.0
_CONNECT_TIMEOUT = 5.0


class NatsBus(BusFront[NatsConsumer, KvDeadLetterBox]):
    """The ``Bus`` protocol on NATS JetStream. Open it with ``await NatsBus.connect(url)``.

    ``lease_ttl`` is how long a member's claim on a partition lives without renewal
    (tests shorten it so that members take over from each other quickly)."""

    def __init__(
        self,
        url: BusUrl,
        nc: Client,
        *,
        lease_ttl: float,
        leases: KvLeases,
        dead_letters: KvDeadLetterBox,
        checkpoints: nats.js.kv.KeyValue,
    ) -> None:
        self._url = url
        self._nc = nc
        self._js = nc.jetstream(timeout=_CALL_TIMEOUT)
        self._publisher = Publisher(nc)
        self._namespace = url.namespace
        self._topics = TopicStreams(self._js, url.namespace, url.partitions)
        self._lease_ttl = lease_ttl
        self._leases = leases
        self._dead_letters = dead_letters
        self._checkpoints = checkpoints
        self._consumers: set[NatsConsumer] = set()
        self._closed = False

    @classmethod
    async def connect(cls, url: BusUrl, *, lease_ttl: float = 10.0, create: bool = True) -> NatsBus:
        """Connect to the server and open the namespace's buckets. ``create=False`` (for
        tools that only look) creates nothing: a namespace no bus has used is
        ``DatabaseNotFound``."""
        if not isinstance(lease_ttl, int | float) or not lease_ttl > 0:
            raise InvalidInput(f"lease_ttl must be positive, got {lease_ttl!r}")
        nc = await connect(
            url.raw,
            url.options,
            where=url.location,
            give_up_after=_CONNECT_TIMEOUT,
            name="eventcore",
            connect_timeout=2.0,
            allow_reconnect=True,
            # nats-py applies this to the first connection too, where "for ever"
            # would hide a wrong address behind a timeout; it becomes -1 below.
            max_reconnect_attempts=2,
            reconnect_time_wait=0.25,
        )
        # Once connected, reconnect for ever: a server restart must not end the bus.
        nc.options["max_reconnect_attempts"] = -1
        try:
            js = nc.jetstream(timeout=_CALL_TIMEOUT)
            namespace = url.namespace
            bus: NatsBus | None = None

            def check_open() -> None:
                if bus is None or bus._closed:
                    raise BusClosed()

            with translated("opening the bus's key-value buckets"):
                if create:
                    leases = await open_bucket(
                        js, f"{namespace}_leases", max_age=max(3600.0, 10 * lease_ttl)
                    )
                    letters = await open_bucket(js, f"{namespace}_deadletters")
                    bodies = await open_bucket(js, f"{namespace}_deadletter_bodies")
                    checkpoints = await open_bucket(js, f"{namespace}_checkpoints")
                else:
                    leases, letters, bodies, checkpoints = await _existing_buckets(js, url)
            bus = cls(
                url,
                nc,
                lease_ttl=float(lease_ttl),
                leases=KvLeases(leases),
                dead_letters=KvDeadLetterBox(
                    letters,
                    bodies,
                    check_open,
                    js=js,
                    bucket=f"{namespace}_deadletters",
                    max_payload=lambda: nc.max_payload,
                ),
                checkpoints=checkpoints,
            )
        except BaseException:
            await nc.close()
            raise
        return bus

    @property
    def url(self) -> str:
        return redact(self._url.raw)

    @property
    def leases(self) -> KvLeases:
        """The namespace's leases (bucket ``{namespace}_leases``), for other holders of
        this bus's connection: single-leader workers, say."""
        return self._leases

    async def _publish(self, messages: Sequence[OutgoingMessage]) -> None:
        counts: dict[str, int] = {}
        with translated("creating a topic"):
            for topic in {message.topic for message in messages}:
                counts[topic] = await self._topics.partitions(topic)
        prefix = self._namespace + "."
        crc32 = zlib.crc32
        outgoing = [
            (
                f"{prefix}{message.topic}.{crc32(message.key.encode()) % counts[message.topic]}",
                message.body,
                {"Nats-Msg-Id": message.message_id, "Eventcore-Key": message.key},
            )
            for message in messages
        ]
        try:
            with translated("publishing"):
                async with asyncio.timeout(_CALL_TIMEOUT):
                    await self._publisher.publish(outgoing)
        except BusUnavailable:
            # A stream deleted behind our back answers "no responders" for ever unless
            # the next publish looks it up (and creates it) again.
            self._topics.forget(counts)
            raise

    async def _join(self, topic: str, group: str, member: str, ack_wait: float) -> NatsConsumer:
        with translated("creating a topic"):
            partitions = await self._topics.partitions(topic)
        consumer = NatsConsumer(
            self._nc,
            self._js,
            topic=topic,
            group=group,
            member=member,
            stream=self._topics.stream(topic),
            namespace=self._namespace,
            partitions=partitions,
            leases=self._leases,
            lease_ttl=self._lease_ttl,
            ack_wait=ack_wait,
        )
        await consumer._join()
        self._consumers.add(consumer)
        return consumer

    async def _load_checkpoint(self, name: str) -> Checkpoint | None:
        key = key_token(name)
        with translated("reading a checkpoint"):
            try:
                entry = await self._checkpoints.get(key)
            except KeyNotFoundError:
                return None
        return _checkpoint_of(entry.value or b"")

    async def _save_checkpoint(self, name: str, checkpoint: Checkpoint) -> None:
        key = key_token(name)
        value = msgspec.json.encode(checkpoint)
        with translated("saving a checkpoint"):
            await self._checkpoints.put(key, value)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        for consumer in list(self._consumers):
            await consumer.aclose()
        self._consumers.clear()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(_CALL_TIMEOUT):
                await self._nc.drain()
        if not self._nc.is_closed:
            with contextlib.suppress(Exception):
                await self._nc.close()


def _checkpoint_of(value: bytes) -> Checkpoint:
    """A checkpoint as kept in the bucket: a JSON object, or, saved before checkpoints
    kept their store, the position alone in decimal."""
    if value.isdigit():
        return Checkpoint(position=int(value))
    try:
        return msgspec.json.decode(value, type=Checkpoint)
    except msgspec.DecodeError as error:
        raise BusUnavailable(f"the checkpoint bucket holds an unreadable value: {error}") from None


async def _existing_buckets(
    js: JetStreamContext, url: BusUrl
) -> tuple[KeyValue, KeyValue, KeyValue, KeyValue]:
    """The namespace's four buckets, none created: a namespace without them was never a
    bus's (``DatabaseNotFound``), one with only some is from an older eventcore."""
    names = ("leases", "deadletters", "deadletter_bodies", "checkpoints")
    present: dict[str, KeyValue] = {}
    for name in names:
        bucket = await find_bucket(js, f"{url.namespace}_{name}")
        if bucket is not None:
            present[name] = bucket
    if not present:
        raise DatabaseNotFound(
            url.raw, f"no bus has used the namespace {url.namespace!r} on this server"
        )
    missing = [name for name in names if name not in present]
    if missing:
        raise BusUnavailable(
            f"the bus namespace {url.namespace!r} lacks the bucket(s) {', '.join(missing)}"
            " (made by an older eventcore); opening it to write adds them"
        )
    return (
        present["leases"],
        present["deadletters"],
        present["deadletter_bodies"],
        present["checkpoints"],
    )
