"""The front every bus backend shares: the public calls of ``Bus``, ``DeadLetterBox``
and ``Consumer``, each refusing a closed bus and bad input the same way on every
backend before handing the backend its own part (the ``_``-named methods).

A backend subclasses :class:`BusFront` and :class:`LetterBoxFront`; its consumers mix
in :class:`AssignedMember`. Keeping the checks here means a new check, or a fix to one,
reaches the memory, SQLite and NATS buses at once.
"""

from __future__ import annotations

import asyncio
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from eventcore._closing import Closing
from eventcore.errors import BusClosed, InvalidInput
from eventcore.leases import KeepAlive
from eventcore.messaging._input import (
    check_checkpoint,
    check_claim,
    check_letter,
    check_letter_filter,
    check_outgoing,
    checkpoint_name,
)
from eventcore.messaging.assignment import PartitionAssignment
from eventcore.messaging.bus import (
    DEFAULT_ACK_WAIT,
    DEFAULT_CLAIM_LEASE,
    Consumer,
    DeadLetter,
    DeadLetterBox,
    OutgoingMessage,
)
from eventcore.messaging.names import check_name
from eventcore.store.checkpoint import Checkpoint

__all__ = ["AssignedMember", "BusFront", "LetterBoxFront"]

ConsumerT = TypeVar("ConsumerT", bound=Consumer)
BoxT = TypeVar("BoxT", bound=DeadLetterBox)


class BusFront(Closing, Generic[ConsumerT, BoxT]):
    """``Bus`` less what each backend does itself: publishing checked messages, joining
    a group under checked names, keeping checkpoints under a checked name, closing."""

    _closed: bool
    _lease_ttl: float
    _dead_letters: BoxT

    @property
    def dead_letters(self) -> BoxT:
        return self._dead_letters

    @property
    def lease_ttl(self) -> float:
        """How long a member's claim on a partition lives without renewal."""
        return self._lease_ttl

    def _check_open(self) -> None:
        if self._closed:
            raise BusClosed()

    async def publish(self, messages: Sequence[OutgoingMessage]) -> None:
        self._check_open()
        check_outgoing(messages)
        if messages:
            await self._publish(messages)

    async def consumer(
        self,
        topic: str,
        group: str,
        *,
        member: str | None = None,
        ack_wait: float = DEFAULT_ACK_WAIT,
    ) -> ConsumerT:
        self._check_open()
        check_name("topic", topic)
        check_name("group", group)
        member = check_name("member", member) if member is not None else uuid.uuid4().hex[:16]
        if isinstance(ack_wait, bool) or not isinstance(ack_wait, int | float) or not ack_wait > 0:
            raise InvalidInput(f"ack_wait must be a positive number of seconds, got {ack_wait!r}")
        return await self._join(topic, group, member, float(ack_wait))

    async def load_checkpoint(self, name: str) -> Checkpoint | None:
        self._check_open()
        return await self._load_checkpoint(checkpoint_name(name))

    async def save_checkpoint(self, name: str, checkpoint: Checkpoint) -> None:
        self._check_open()
        name = checkpoint_name(name)
        await self._save_checkpoint(name, check_checkpoint(checkpoint))

    @abstractmethod
    async def _publish(self, messages: Sequence[OutgoingMessage]) -> None:
        """Publish ``messages``: checked, at least one, the bus open."""

    @abstractmethod
    async def _join(self, topic: str, group: str, member: str, ack_wait: float) -> ConsumerT:
        """A member of ``group`` on ``topic``: the names checked, ``ack_wait`` > 0."""

    @abstractmethod
    async def _load_checkpoint(self, name: str) -> Checkpoint | None: ...

    @abstractmethod
    async def _save_checkpoint(self, name: str, checkpoint: Checkpoint) -> None: ...


class LetterBoxFront(ABC):
    """``DeadLetterBox`` less the keeping itself. ``check_open`` raises ``BusClosed``
    once the owning bus is closed (None where the backend refuses that by itself)."""

    def __init__(self, check_open: Callable[[], None] | None) -> None:
        self._check_open = check_open if check_open is not None else _open

    async def put(self, letter: DeadLetter) -> None:
        self._check_open()
        check_letter(letter)
        await self._put(letter)

    async def letters(
        self,
        *,
        group: str | None = None,
        topic: str | None = None,
        after: str | None = None,
        limit: int = 100,
    ) -> list[DeadLetter]:
        self._check_open()
        check_letter_filter(group, topic, limit)
        return await self._letters(group, topic, after, limit)

    async def get(self, letter_id: str) -> DeadLetter:
        self._check_open()
        return await self._get(letter_id)

    async def drop(self, letter_id: str) -> None:
        self._check_open()
        await self._drop(letter_id)

    async def request_retry(self, letter_id: str) -> None:
        self._check_open()
        await self._request_retry(letter_id)

    async def claim_retries(
        self,
        group: str,
        topic: str,
        limit: int = 100,
        *,
        holder: str = "",
        lease: float = DEFAULT_CLAIM_LEASE,
    ) -> list[DeadLetter]:
        self._check_open()
        check_letter_filter(group, topic, limit)
        check_claim(holder, lease)
        return await self._claim_retries(group, topic, limit, holder, lease)

    async def count(self, *, group: str | None = None, topic: str | None = None) -> int:
        self._check_open()
        if group is not None:
            check_name("group", group)
        if topic is not None:
            check_name("topic", topic)
        return await self._count(group, topic)

    @abstractmethod
    async def _put(self, letter: DeadLetter) -> None: ...

    @abstractmethod
    async def _letters(
        self, group: str | None, topic: str | None, after: str | None, limit: int
    ) -> list[DeadLetter]: ...

    @abstractmethod
    async def _get(self, letter_id: str) -> DeadLetter: ...

    @abstractmethod
    async def _drop(self, letter_id: str) -> None: ...

    @abstractmethod
    async def _request_retry(self, letter_id: str) -> None: ...

    @abstractmethod
    async def _claim_retries(
        self, group: str, topic: str, limit: int, holder: str, lease: float
    ) -> list[DeadLetter]: ...

    @abstractmethod
    async def _count(self, group: str | None, topic: str | None) -> int: ...


class AssignedMember:
    """A consumer's identity and partitions, as its ``PartitionAssignment`` holds them,
    and its joining: renewals and rebalances take ``_lock``, so that a renewal never
    re-acquires a lease a rebalance just released."""

    _assignment: PartitionAssignment
    _lock: asyncio.Lock
    _keep_alive: KeepAlive

    async def _join(self) -> None:
        """Take this member's first partitions, then keep its leases alive (should a
        renewal be late, the fetch path's rebalance renews by itself)."""
        async with self._lock:
            await self._assignment.renew()
        self._keep_alive.start()

    @property
    def member(self) -> str:
        return self._assignment.member

    @property
    def partitions(self) -> frozenset[int]:
        return self._assignment.owned


def _open() -> None:
    """For a box whose backend refuses work once its bus is closed."""
