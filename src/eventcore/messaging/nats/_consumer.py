"""``NatsConsumer``: one member of a consumer group on a topic of a ``NatsBus``.

Ownership of partitions comes from ``PartitionAssignment`` over the KV leases; each
owned partition is read by a ``PartitionReader`` on the durable pull consumer
``{group}-{p}``. Readers are added and removed only at the start of a fetch, when the
member holds no unsettled delivery (the ``Consumer`` contract), so an ack always finds
the reader of its delivery. Taking a partition over after an owner that died holding
deliveries starts its consumer again from the ack floor (``_reader``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence

from nats.aio.client import Client
from nats.js.api import AckPolicy, ConsumerConfig, ConsumerInfo, DeliverPolicy
from nats.js.client import JetStreamContext
from nats.js.errors import BadRequestError, NotFoundError, ServerError

from eventcore._nats.errors import translated
from eventcore.errors import BusClosed, BusError, BusUnavailable
from eventcore.leases import KeepAlive
from eventcore.leases.nats import KvLeases
from eventcore.messaging._backend import AssignedMember
from eventcore.messaging._input import check_delay, check_delivery, check_fetch
from eventcore.messaging.assignment import PartitionAssignment
from eventcore.messaging.bus import Delivery
from eventcore.messaging.nats._handover import Handover
from eventcore.messaging.nats._partition import PartitionReader

__all__ = ["NatsConsumer"]

#: How many deliveries a partition's consumer lets be out unacknowledged at once.
_MAX_ACK_PENDING = 10_000
_FLUSH_TIMEOUT = 5
#: Tries at writing the takeover record before giving up (each lost only to a late
#: handover record of the previous owner).
_TAKEOVER_ATTEMPTS = 5


class NatsConsumer(AssignedMember):
    def __init__(
        self,
        nc: Client,
        js: JetStreamContext,
        *,
        topic: str,
        group: str,
        member: str,
        stream: str,
        namespace: str,
        partitions: int,
        leases: KvLeases,
        lease_ttl: float,
        ack_wait: float,
    ) -> None:
        self._nc = nc
        self._js = js
        self._topic = topic
        self._group = group
        self._stream = stream
        self._namespace = namespace
        self._leases = leases
        self._scope = f"{topic}.{group}"
        self._assignment = PartitionAssignment(
            _HandoverLeases(leases, self._hand_over),
            scope=self._scope,
            member=member,
            partitions=partitions,
            ttl=lease_ttl,
        )
        self._ack_wait = ack_wait
        self._readers: dict[int, PartitionReader] = {}
        #: Revision of each owned partition's handover record, as this member wrote it.
        self._revisions: dict[int, int] = {}
        self._lock = asyncio.Lock()
        self._arrival = asyncio.Event()
        self._keep_alive = KeepAlive(
            self._assignment.renew,
            ttl=lease_ttl,
            name=f"eventcore-nats-lease-{member}",
            lock=self._lock,
        )
        self._rebalanced_at = 0.0
        # Often enough that a partition given up by a leaving member is taken over soon.
        self._rebalance_every = min(max(lease_ttl / 10, 0.05), 1.0)
        self._closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise BusClosed()

    async def _rebalance(self, now: float) -> None:
        if now - self._rebalanced_at < self._rebalance_every:
            return
        if self._lock.locked():
            # A renewal (a dozen KV round trips) is running: rebalance at the next fetch
            # rather than make this one wait for it.
            return
        self._rebalanced_at = now
        async with self._lock:
            await self._assignment.rebalance()
        owned = self._assignment.owned
        # Partitions whose lease ran out under us (renewal failed): stop reading them.
        for partition in sorted(set(self._readers) - owned):
            await self._hand_over(partition)
        for partition in sorted(owned - set(self._readers)):
            self._readers[partition] = await self._reader(partition)

    async def _hand_over(self, partition: int) -> None:
        """Before a partition's lease is released: send back what this member holds of it
        and leave the next owner the handover record. Done first so that the next owner
        can never read past messages still held here."""
        reader = self._readers.pop(partition, None)
        revision = self._revisions.pop(partition, 0)
        if reader is None:
            return
        with translated("giving up a partition"):
            clean = await reader.stop()
            await self._nc.flush(timeout=_FLUSH_TIMEOUT)
        record = reader.handover.handed_over(clean=clean, unseen=reader.unseen)
        # Refused when another owner took the partition meanwhile (our lease ran out):
        # its record stands, and ours must not tell it a clean story.
        await self._leases.write_handover(self._scope, partition, record.encode(), revision)

    async def _reader(self, partition: int) -> PartitionReader:
        """Take the partition over: read it through its consumer, from where the group
        stands.

        Why the consumer may have to start again: JetStream keeps a delivery nobody
        acknowledged "pending" until its ack wait runs out, and meanwhile hands out the
        messages after it. A previous owner that gave the partition up in order sent
        everything it held back at once, so those come first; one that died (kill -9)
        or stalled past its lease did not, and reading on would hand this member a
        key's later messages before its earlier ones (the order rule of ``Consumer``).
        Then, and only then, the consumer is deleted and made again to start right
        after its ack floor: every message not acknowledged comes again at once, in
        stream order, before anything later, as on the SQLite and memory buses. The
        price: messages acknowledged above the floor come again too (the inbox absorbs
        them), and ``attempt`` is carried over by the record as an estimate
        (``_handover``). Waiting for the ack wait instead, sending every later message
        back meanwhile, was tried: JetStream counts the messages sent back as pending
        too, so after a second kill no count or sequence tells the ones held by the
        dead from those sent back, and the partition stalls for an ack wait each time.
        Starting again costs a few round trips once per takeover after a death, and
        nothing in the steady state."""
        durable = f"{self._group}-{partition}"
        for _ in range(_TAKEOVER_ATTEMPTS):
            raw, revision = await self._leases.read_handover(self._scope, partition)
            record = Handover.decode(raw)
            info = await self._open(durable, partition, record.start)
            floor = (info.ack_floor.stream_seq if info.ack_floor else 0) or 0
            restart = bool(info.num_ack_pending) and not record.clean
            if restart:
                delivered = (info.delivered.stream_seq if info.delivered else 0) or 0
                record = record.restarted(floor, delivered)
            else:
                record = record.taken(floor)
            # Written before the consumer is deleted: should this member die between
            # the two, the next owner still creates it at ``record.start``.
            written = await self._leases.write_handover(
                self._scope, partition, record.encode(), revision
            )
            if written is None:
                continue  # a late handover record of the previous owner: read it again
            if restart:
                with (
                    translated("starting a partition's consumer again"),
                    contextlib.suppress(NotFoundError),
                ):
                    await self._js.delete_consumer(self._stream, durable)
                await self._open(durable, partition, record.start)
            break
        else:
            raise BusUnavailable(
                f"could not take partition {partition} over: its record keeps changing"
            )
        with translated("opening a partition's consumer"):
            reader = PartitionReader(
                self._nc,
                topic=self._topic,
                partition=partition,
                stream=self._stream,
                durable=durable,
                ack_wait=self._ack_wait,
                wake=self._arrival.set,
            )
            await reader.start(record)
        self._revisions[partition] = written
        return reader

    async def _open(self, durable: str, partition: int, start: int) -> ConsumerInfo:
        """The partition's durable consumer, created (at ``start``, or the beginning)
        if it does not exist."""
        config = ConsumerConfig(
            durable_name=durable,
            filter_subject=f"{self._namespace}.{self._topic}.{partition}",
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE if start else DeliverPolicy.ALL,
            opt_start_seq=start or None,
            ack_wait=self._ack_wait,
            max_deliver=-1,
            max_ack_pending=_MAX_ACK_PENDING,
        )
        with translated("opening a partition's consumer"):
            try:
                info: ConsumerInfo = await self._js.add_consumer(self._stream, config)
            except (BadRequestError, ServerError) as refused:
                # It exists with settings the server will not change: another member's
                # ack_wait, or a start sequence other than ``start`` (an owner died
                # between writing the record and starting the consumer again; its
                # successor starts it again anyway). Read it as is.
                try:
                    info = await self._js.consumer_info(self._stream, durable)
                except NotFoundError:
                    raise refused from None
        return info

    async def fetch(self, max_messages: int, timeout: float) -> list[Delivery]:  # noqa: ASYNC109
        self._check_open()
        check_fetch(max_messages, timeout)
        deadline = time.monotonic() + timeout
        while True:
            now = time.monotonic()
            await self._rebalance(now)
            self._arrival.clear()
            ready = [
                reader
                for partition, reader in sorted(self._readers.items())
                if partition in self._assignment.owned and reader.ready(now)
            ]
            taken: list[Delivery] = []
            with translated("fetching"):
                for reader in ready:
                    await reader.fill(max_messages - len(taken))
                    taken += await reader.take(max_messages - len(taken), time.monotonic())
                    if len(taken) == max_messages:
                        break
            if taken:
                # A partition found empty is read only through ``wait_for_one``: watch the
                # ones that gave nothing now too, or while the others keep this member
                # busy (no fetch comes back empty), it would stay unread.
                with translated("fetching"):
                    for reader in ready:
                        if reader.ready(now):
                            await reader.wait_for_one()
                return taken
            now = time.monotonic()
            if now >= deadline:
                return []
            with translated("fetching"):
                for reader in ready:
                    await reader.wait_for_one(deadline - now)
            wait = min(deadline, now + self._rebalance_every) - now
            held = [r.hold_until() for r in self._readers.values() if r.hold_until() > now]
            if held:
                wait = min(wait, min(held) - now)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(wait, 0.001)):
                    await self._arrival.wait()
            self._check_open()

    def _reader_of(self, delivery: Delivery) -> PartitionReader | None:
        check_delivery(delivery, self._topic, self._assignment.partition_count)
        return self._readers.get(delivery.partition)

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        self._check_open()
        readers = [self._reader_of(delivery) for delivery in deliveries]
        pairs = [(d, r) for d, r in zip(deliveries, readers, strict=True) if r is not None]
        with translated("acknowledging"):
            for delivery, reader in pairs[:-1]:
                await reader.ack(delivery.sequence)
            # One round trip makes the server have every ack before we return, so the
            # next fetch (of any member, on any connection) sees them. The last ack asks
            # for the server's answer, which comes after the acks sent before it; not
            # ``nc.flush()``: nats-py writes its PING ahead of publishes still buffered,
            # so the PONG can come back before the server has seen the acks.
            confirmed = False
            if pairs:
                last, reader = pairs[-1]
                confirmed = await reader.ack(last.sequence, confirm=True)
            if deliveries and not confirmed:
                await self._nc.flush(timeout=_FLUSH_TIMEOUT)

    async def nak(self, delivery: Delivery, delay: float = 0.0) -> None:
        self._check_open()
        reader = self._reader_of(delivery)
        check_delay(delay)
        if reader is None:
            return  # no longer ours: the new owner gets it again anyway
        with translated("sending a message back"):
            await reader.nak(delivery.sequence, float(delay), time.monotonic())
            await self._nc.flush(timeout=_FLUSH_TIMEOUT)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._arrival.set()
        # Bounded, even if nats-py swallows the cancel (``KeepAlive.aclose``).
        await self._keep_alive.aclose()
        with contextlib.suppress(BusError):
            async with self._lock:
                # Hands every partition over (``_hand_over``) before releasing its lease.
                await self._assignment.leave()
        for partition in sorted(self._readers):
            with contextlib.suppress(BusError):
                await self._hand_over(partition)


class _HandoverLeases:
    """The consumer's leases: a partition is handed over before its lease is released."""

    def __init__(self, leases: KvLeases, hand_over: Callable[[int], Awaitable[None]]) -> None:
        self._leases = leases
        self._hand_over = hand_over

    async def heartbeat(self, scope: str, member: str, ttl: float) -> list[str]:
        return await self._leases.heartbeat(scope, member, ttl)

    async def acquire(self, scope: str, partition: int, member: str, ttl: float) -> bool:
        return await self._leases.acquire(scope, partition, member, ttl)

    async def release(self, scope: str, partition: int, member: str) -> None:
        await self._hand_over(partition)
        await self._leases.release(scope, partition, member)

    async def leave(self, scope: str, member: str) -> None:
        await self._leases.leave(scope, member)
