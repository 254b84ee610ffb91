"""``MemoryBus``: the whole bus contract inside one process, for tests and throwaway runs.

Nothing in here awaits in the middle of a change, so on one event loop every
operation is atomic without a lock. (A consumer's renewals and rebalances do take its
``_lock``, as on the other buses, so that all three join through one ``_join``; here it is
never contended.) Waiting consumers sleep on an ``asyncio.Event``
that is set (and replaced) whenever something they might be waiting for happens:
a publish, an ack, a partition released, a member leaving, the bus closing.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from eventcore.errors import BusClosed, InvalidInput
from eventcore.leases import KeepAlive, MemoryLeases
from eventcore.messaging._backend import AssignedMember, BusFront
from eventcore.messaging._input import check_delay, check_delivery, check_fetch
from eventcore.messaging._wakeup import Wakeup
from eventcore.messaging.assignment import PartitionAssignment
from eventcore.messaging.bus import DEFAULT_PARTITIONS, Delivery, OutgoingMessage, partition_of
from eventcore.messaging.memory._deadletters import MemoryDeadLetterBox
from eventcore.store.checkpoint import Checkpoint

__all__ = ["DEFAULT_LEASE_TTL", "MemoryBus", "MemoryConsumer"]

#: Seconds a member's claim on a partition lives without renewal.
DEFAULT_LEASE_TTL = 10.0


@dataclass(frozen=True, slots=True)
class _Stored:
    message_id: str
    key: str
    body: bytes
    published_at: datetime


@dataclass(slots=True)
class _Topic:
    partitions: list[list[_Stored]]
    ids: set[str] = field(default_factory=set)


@dataclass(slots=True)
class _GroupPartition:
    """What a group has done with one partition, shared by all its members."""

    #: Every sequence up to here is acknowledged.
    committed: int = 0
    #: Acknowledged sequences above ``committed`` (acks may come out of order).
    acked: set[int] = field(default_factory=set)
    #: Deliveries so far of each not yet committed sequence.
    attempts: dict[int, int] = field(default_factory=dict)

    def ack(self, sequence: int) -> None:
        if sequence <= self.committed:
            return
        self.acked.add(sequence)
        while self.committed + 1 in self.acked:
            self.committed += 1
            self.acked.discard(self.committed)
            self.attempts.pop(self.committed, None)


@dataclass(slots=True)
class _Cursor:
    """One member's reading position in a partition it owns."""

    next: int
    #: Fetched, not yet acked or nak'ed: sequence → (redeliver-at, attempt).
    unsettled: dict[int, tuple[float, int]] = field(default_factory=dict)
    #: A nak's delay: nothing of this partition comes before this moment.
    resume_at: float = 0.0


class MemoryBus(BusFront["MemoryConsumer", MemoryDeadLetterBox]):
    """Topics, groups, dead letters and checkpoints in dicts; gone when the process ends.

    ``lease_ttl`` is how long a member's claim on a partition lives without renewal;
    tests shorten it so that members take over from each other quickly.
    """

    def __init__(
        self, partitions: int = DEFAULT_PARTITIONS, *, lease_ttl: float = DEFAULT_LEASE_TTL
    ) -> None:
        if not isinstance(partitions, int) or partitions < 1:
            raise InvalidInput(f"partitions must be a positive whole number, got {partitions!r}")
        if not lease_ttl > 0:
            raise InvalidInput(f"lease_ttl must be positive, got {lease_ttl!r}")
        self._partitions = partitions
        self._lease_ttl = lease_ttl
        self._topics: dict[str, _Topic] = {}
        self._groups: dict[tuple[str, str], list[_GroupPartition]] = {}
        self._checkpoints: dict[str, Checkpoint] = {}
        self._consumers: set[MemoryConsumer] = set()
        self._wakeup = Wakeup()
        self._leases = MemoryLeases(on_change=self._wakeup.fire)
        self._dead_letters = MemoryDeadLetterBox(self._check_open)
        self._closed = False

    @property
    def leases(self) -> MemoryLeases:
        """This bus's leases, for other holders in the process (single-leader workers)."""
        return self._leases

    @property
    def url(self) -> str:
        if self._partitions == DEFAULT_PARTITIONS:
            return "memory://"
        return f"memory://?partitions={self._partitions}"

    async def _publish(self, messages: Sequence[OutgoingMessage]) -> None:
        published_at = datetime.now(UTC)
        for message in messages:
            topic = self._topic(message.topic)
            if message.message_id in topic.ids:
                continue
            topic.ids.add(message.message_id)
            partition = partition_of(message.key, len(topic.partitions))
            topic.partitions[partition].append(
                _Stored(message.message_id, message.key, bytes(message.body), published_at)
            )
        self._wakeup.fire()

    async def _join(self, topic: str, group: str, member: str, ack_wait: float) -> MemoryConsumer:
        stored = self._topic(topic)
        progress = self._groups.setdefault(
            (group, topic), [_GroupPartition() for _ in stored.partitions]
        )
        assignment = PartitionAssignment(
            self._leases,
            scope=f"{group}:{topic}",
            member=member,
            partitions=len(stored.partitions),
            ttl=self._lease_ttl,
        )
        consumer = MemoryConsumer(self, topic, stored, progress, assignment, ack_wait)
        self._consumers.add(consumer)
        await consumer._join()
        return consumer

    def _topic(self, name: str) -> _Topic:
        topic = self._topics.get(name)
        if topic is None:
            topic = _Topic([[] for _ in range(self._partitions)])
            self._topics[name] = topic
        return topic

    async def _load_checkpoint(self, name: str) -> Checkpoint | None:
        return self._checkpoints.get(name)

    async def _save_checkpoint(self, name: str, checkpoint: Checkpoint) -> None:
        self._checkpoints[name] = checkpoint

    async def aclose(self) -> None:
        if self._closed:
            return
        for consumer in list(self._consumers):
            await consumer.aclose()
        self._closed = True
        self._wakeup.fire()


class MemoryConsumer(AssignedMember):
    """One member of a group on a topic of a ``MemoryBus``."""

    def __init__(
        self,
        bus: MemoryBus,
        topic: str,
        stored: _Topic,
        progress: list[_GroupPartition],
        assignment: PartitionAssignment,
        ack_wait: float,
    ) -> None:
        self._bus = bus
        self._topic_name = topic
        self._stored = stored
        self._progress = progress
        self._assignment = assignment
        self._ack_wait = ack_wait
        self._cursors: dict[int, _Cursor] = {}
        # Which owned partition a fetch looks at first, so a small ``max_messages``
        # does not starve the higher partitions.
        self._start_at = 0
        self._lock = asyncio.Lock()
        self._keep_alive = KeepAlive(
            assignment.renew,
            ttl=assignment.ttl,
            name=f"eventcore-memory-lease-{self.member}",
            lock=self._lock,
        )
        self._closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise BusClosed()
        self._bus._check_open()

    async def fetch(self, max_messages: int, timeout: float) -> list[Delivery]:  # noqa: ASYNC109
        self._check_open()
        check_fetch(max_messages, timeout)
        deadline = time.monotonic() + timeout
        while True:
            # Taken before looking, so a change made after the look still wakes us.
            changed = self._bus._wakeup.current()
            await self._rebalance()
            deliveries = self._collect(max_messages)
            if deliveries:
                return deliveries
            now = time.monotonic()
            if now >= deadline:
                return []
            # Also wake for a nak's delay or an ack wait running out, and to rebalance
            # when members come or go.
            wait = min(deadline, self._next_due(), now + self._assignment.ttl / 3) - now
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(wait, 0.0)):
                    await changed.wait()
            self._check_open()

    async def _rebalance(self) -> None:
        async with self._lock:
            await self._assignment.rebalance()
        owned = self._assignment.owned
        for partition in list(self._cursors):
            if partition not in owned:
                del self._cursors[partition]
        for partition in owned - self._cursors.keys():
            # A new owner starts where the group stands; anything its previous owner
            # left unsettled comes again.
            self._cursors[partition] = _Cursor(next=self._progress[partition].committed + 1)

    def _collect(self, max_messages: int) -> list[Delivery]:
        now = time.monotonic()
        deliveries: list[Delivery] = []
        owned = sorted(self._cursors)
        if not owned:
            return deliveries
        self._start_at = (self._start_at + 1) % len(owned)
        for partition in owned[self._start_at :] + owned[: self._start_at]:
            if len(deliveries) >= max_messages:
                break
            self._collect_partition(partition, now, max_messages - len(deliveries), deliveries)
        return deliveries

    def _collect_partition(
        self, partition: int, now: float, room: int, deliveries: list[Delivery]
    ) -> None:
        cursor = self._cursors[partition]
        if cursor.unsettled:
            if min(due for due, _ in cursor.unsettled.values()) > now:
                return
            # The ack wait ran out: everything unsettled comes again, from the first.
            cursor.next = min(cursor.unsettled)
            cursor.unsettled.clear()
        if cursor.resume_at > now:
            return
        progress = self._progress[partition]
        log = self._stored.partitions[partition]
        sequence = max(cursor.next, progress.committed + 1)
        while room > 0 and sequence <= len(log):
            if sequence not in progress.acked:
                attempt = progress.attempts.get(sequence, 0) + 1
                progress.attempts[sequence] = attempt
                cursor.unsettled[sequence] = (now + self._ack_wait, attempt)
                deliveries.append(self._delivery(partition, sequence, attempt))
                room -= 1
            sequence += 1
        cursor.next = sequence

    def _delivery(self, partition: int, sequence: int, attempt: int) -> Delivery:
        stored = self._stored.partitions[partition][sequence - 1]
        return Delivery(
            topic=self._topic_name,
            message_id=stored.message_id,
            key=stored.key,
            body=stored.body,
            partition=partition,
            sequence=sequence,
            attempt=attempt,
            published_at=stored.published_at,
            behind=len(self._stored.partitions[partition]) - sequence,
        )

    def _next_due(self) -> float:
        """The next moment a partition unblocks by itself (a nak delay or ack wait)."""
        now = time.monotonic()
        due = float("inf")
        for cursor in self._cursors.values():
            if cursor.unsettled:
                due = min(due, *(at for at, _ in cursor.unsettled.values()))
            elif cursor.resume_at > now:
                due = min(due, cursor.resume_at)
        return due

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        self._check_open()
        for delivery in deliveries:
            self._check_delivery(delivery)
        for delivery in deliveries:
            self._progress[delivery.partition].ack(delivery.sequence)
            cursor = self._cursors.get(delivery.partition)
            if cursor is not None:
                cursor.unsettled.pop(delivery.sequence, None)
        self._bus._wakeup.fire()

    async def nak(self, delivery: Delivery, delay: float = 0.0) -> None:
        self._check_open()
        self._check_delivery(delivery)
        check_delay(delay)
        cursor = self._cursors.get(delivery.partition)
        if cursor is None:
            return  # no longer ours: the new owner delivers it again anyway
        unsettled = cursor.unsettled.get(delivery.sequence)
        if unsettled is None or unsettled[1] != delivery.attempt:
            return  # acked already, or an older delivery of a message sent again since
        for sequence in [s for s in cursor.unsettled if s >= delivery.sequence]:
            del cursor.unsettled[sequence]
        cursor.next = min(cursor.next, delivery.sequence)
        cursor.resume_at = time.monotonic() + delay
        self._bus._wakeup.fire()

    def _check_delivery(self, delivery: Delivery) -> None:
        partitions = self._stored.partitions
        check_delivery(delivery, self._topic_name, len(partitions))
        if not 1 <= delivery.sequence <= len(partitions[delivery.partition]):
            raise InvalidInput(
                f"no message at partition {delivery.partition}, sequence {delivery.sequence}"
            )

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._keep_alive.aclose()
        self._cursors.clear()
        await self._assignment.leave()
        self._bus._consumers.discard(self)
        self._bus._wakeup.fire()
