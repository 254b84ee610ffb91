"""The bus contract (docs/architecture.md#messaging), written as Protocols.

A bus carries messages on **topics**. Every topic is split into a fixed number of
**partitions**; a message's partition is picked from its **key** (eventcore uses the
stream id), so all messages of one stream land in one partition, in publish order.

A **consumer group** (one per subscribing service and topic) reads a topic once
between all its members: each partition is owned by one member at a time (leases,
rebalanced as members come and go, see ``assignment``), and the member reads it in
order. That is how several instances share the work while each stream's events stay
in order.

Delivery is at least once: a message fetched and not acknowledged within the
consumer's ``ack_wait`` — the member died, hung, or lost its lease — is delivered
again, with ``attempt`` counting the deliveries. Publishing is idempotent per
(topic, message id): a message published twice is stored once.

Every backend passes one conformance suite (``eventcore.testing.bus.BusContract``).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from typing import Literal, Protocol, runtime_checkable

import msgspec

from eventcore._nats.url import SCHEMES as NATS_SCHEMES
from eventcore.errors import InvalidInput
from eventcore.leases.protocol import Leases
from eventcore.store.checkpoint import Checkpoint

__all__ = [
    "DEFAULT_ACK_WAIT",
    "DEFAULT_CLAIM_LEASE",
    "DEFAULT_PARTITIONS",
    "Bus",
    "Consumer",
    "DeadLetter",
    "DeadLetterBox",
    "Delivery",
    "Leases",
    "OutgoingMessage",
    "bus_kind",
    "bus_leases",
    "partition_of",
]

#: Partitions per topic unless the bus URL says otherwise (``?partitions=N``).
DEFAULT_PARTITIONS = 8
#: Seconds a delivery may stay unacknowledged before the bus delivers it again.
DEFAULT_ACK_WAIT = 30.0
#: Seconds a claim on a dead letter lasts unless the claimer says otherwise.
DEFAULT_CLAIM_LEASE = 60.0


def partition_of(key: str, partitions: int) -> int:
    """The partition of ``key``: the same on every process and every run (CRC-32)."""
    return zlib.crc32(key.encode()) % partitions


def bus_kind(bus: Bus) -> str:
    """What kind of bus ``bus`` is (``memory``, ``sqlite``, ``nats``): its URL's scheme,
    with ``tls://`` (NATS requiring TLS) counted as ``nats``."""
    scheme = bus.url.partition(":")[0].lower()
    return NATS_SCHEMES.get(scheme, scheme)


def bus_leases(bus: Bus) -> Leases:
    """The leases ``bus`` keeps (where its consumers claim partitions: its SQLite file, its
    NATS namespace, its process), for other lease holders that every instance on the
    bus must see, such as single-leader workers (``eventcore.singleton``).
    ``InvalidInput`` for a bus that keeps none to share."""
    leases = getattr(bus, "leases", None)
    if not isinstance(leases, Leases):
        raise InvalidInput(f"the bus at {bus.url} keeps no leases to share")
    return leases


class OutgoingMessage(msgspec.Struct, frozen=True):
    """A message to publish. ``message_id`` de-duplicates; ``key`` picks the partition."""

    topic: str
    message_id: str
    key: str
    body: bytes


class Delivery(msgspec.Struct, frozen=True):
    """A message handed to a consumer.

    ``sequence`` grows with publish order within a partition; ``attempt`` is 1 on the
    first delivery to this group and grows with each redelivery. ``behind``: messages of
    the partition published after this one and not yet acknowledged by the group, as the
    bus knew at the fetch (None when it does not say); the subscriber's lag is read
    from it.
    """

    topic: str
    message_id: str
    key: str
    body: bytes
    partition: int
    sequence: int
    attempt: int
    published_at: datetime
    behind: int | None = None


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True):
    """A message a consumer group gave up on, with why.

    ``letter_id`` is ``"{group}:{topic}:{message_id}"``: one letter per message and group.
    ``status`` is ``"dead"`` until someone asks for a retry (``"retry"``); a member of
    the group then claims it (``claim_retries``: ``"claimed"``, by ``claimed_by`` until
    ``claimed_until``) and runs it through its handler. The letter stays in the box while
    claimed: it is dropped once handled, put back if not finished, and a claim whose
    holder died runs out at ``claimed_until``, after which the letter is claimed again.
    """

    letter_id: str
    group: str
    topic: str
    message_id: str
    key: str
    body: bytes
    reason: str
    error_type: str
    attempts: int
    failed_at: datetime
    status: Literal["dead", "retry", "claimed"] = "dead"
    claimed_by: str | None = None
    claimed_until: datetime | None = None

    @staticmethod
    def id_for(group: str, topic: str, message_id: str) -> str:
        return f"{group}:{topic}:{message_id}"

    @classmethod
    def of(
        cls,
        group: str,
        message: Delivery | DeadLetter,
        reason: str,
        error_type: str,
        attempts: int,
    ) -> DeadLetter:
        """The letter of ``message`` (a delivery, or a letter tried again) that ``group``
        gives up on now, after ``attempts`` attempts, for ``reason``."""
        return cls(
            letter_id=cls.id_for(group, message.topic, message.message_id),
            group=group,
            topic=message.topic,
            message_id=message.message_id,
            key=message.key,
            body=message.body,
            reason=reason,
            error_type=error_type,
            attempts=attempts,
            failed_at=datetime.now(UTC),
        )


@runtime_checkable
class Consumer(Protocol):
    """One member of a consumer group on one topic.

    The subscriber's loop is: ``fetch``, handle, then ``ack`` (or ``nak``) *every*
    delivery of that fetch, then ``fetch`` again. Between fetches the member holds no
    unsettled delivery, which is when it takes on or gives up partitions.
    """

    @property
    def member(self) -> str:
        """This member's id (unique within its group)."""
        ...

    @property
    def partitions(self) -> frozenset[int]:
        """The partitions this member owns right now."""
        ...

    async def fetch(self, max_messages: int, timeout: float) -> list[Delivery]:  # noqa: ASYNC109
        """Up to ``max_messages`` deliveries from owned partitions, each partition's in
        order; waits up to ``timeout`` seconds for the first one, [] if none came.

        A partition whose earlier delivery is still unsettled (or was nak'ed and its
        delay has not passed) gives nothing, so a key's messages are never handled out
        of order by this group."""
        ...

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        """The group is done with these messages: they are not delivered again."""
        ...

    async def nak(self, delivery: Delivery, delay: float = 0.0) -> None:
        """Deliver ``delivery`` again after ``delay`` seconds, with ``attempt`` + 1.

        Deliveries of the same partition fetched after it and not acknowledged come
        again after it, in order."""
        ...

    async def aclose(self) -> None:
        """Leave the group: give up this member's partitions so others take them over.
        Unsettled deliveries are delivered again to whoever takes over."""
        ...


@runtime_checkable
class DeadLetterBox(Protocol):
    """Where consumer groups park the messages they gave up on."""

    async def put(self, letter: DeadLetter) -> None:
        """Keep ``letter`` (replacing an earlier letter of the same id)."""
        ...

    async def letters(
        self,
        *,
        group: str | None = None,
        topic: str | None = None,
        after: str | None = None,
        limit: int = 100,
    ) -> list[DeadLetter]:
        """Letters, oldest first (by ``failed_at``, then id), optionally only one
        group's or one topic's; ``after`` (a letter id) pages on."""
        ...

    async def get(self, letter_id: str) -> DeadLetter:
        """One letter; ``DeadLetterNotFound`` if there is none of that id."""
        ...

    async def drop(self, letter_id: str) -> None:
        """Delete a letter for good; ``DeadLetterNotFound`` if there is none."""
        ...

    async def request_retry(self, letter_id: str) -> None:
        """Mark a letter for its group to run again; ``DeadLetterNotFound`` if none.
        A letter under a live claim is left as it is: it is being retried already."""
        ...

    async def claim_retries(
        self,
        group: str,
        topic: str,
        limit: int = 100,
        *,
        holder: str = "",
        lease: float = DEFAULT_CLAIM_LEASE,
    ) -> list[DeadLetter]:
        """Claim the group's letters marked for retry, and those whose claim ran out,
        oldest first: each stays in the box, ``"claimed"`` by ``holder`` for ``lease``
        seconds, and is returned as stored. Two claimers never hold a letter at once.

        The holder then ``drop``s each letter it handled and ``put``s back the others
        (parked again, or marked for retry); a letter whose holder died is claimed
        again once its claim ran out."""
        ...

    async def count(self, *, group: str | None = None, topic: str | None = None) -> int:
        """How many letters the box holds (of one group, of one topic, or both)."""
        ...


@runtime_checkable
class Bus(AbstractAsyncContextManager["Bus", None], Protocol):
    """A message bus: publish to topics, consume as groups, park dead letters.

    ``async with await open_bus(url) as bus:`` closes it (``aclose``) however the block
    ends."""

    @property
    def url(self) -> str:
        """The URL the bus was opened with (no password)."""
        ...

    @property
    def dead_letters(self) -> DeadLetterBox: ...

    async def publish(self, messages: Sequence[OutgoingMessage]) -> None:
        """Publish messages; return once the bus has durably accepted all of them.

        A message whose (topic, message id) the bus has already accepted is not
        stored again. Raises ``BusUnavailable`` if the bus could not take them, in
        which case any of them may or may not have been accepted: publish them again.
        """
        ...

    async def consumer(
        self,
        topic: str,
        group: str,
        *,
        member: str | None = None,
        ack_wait: float = DEFAULT_ACK_WAIT,
    ) -> Consumer:
        """Join ``group`` on ``topic`` (both created on demand) as ``member`` (a fresh
        id when None). A new group starts at the beginning of the topic."""
        ...

    async def load_checkpoint(self, name: str) -> Checkpoint | None:
        """A relay's checkpoint: the store and the position in its log it has published
        up to; None if none was saved. One saved before checkpoints kept their store
        has ``store_id`` None."""
        ...

    async def save_checkpoint(self, name: str, checkpoint: Checkpoint) -> None:
        """Keep ``checkpoint`` under ``name`` (replacing what was there), durably."""
        ...

    async def aclose(self) -> None:
        """Release every resource. Idempotent; later calls raise ``BusClosed``."""
        ...
