"""A bus and a consumer that pass every call on to the ones they wrap.

The fault-injecting and the watching wrappers (``faults``, ``idle``) are these with a
few calls changed: every call but closing goes through ``_call`` (named, so a wrapper
can fault it), and the bus hands each consumer it opens to ``_wrap``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from eventcore._closing import Closing
from eventcore.messaging.bus import (
    DEFAULT_ACK_WAIT,
    Bus,
    Consumer,
    DeadLetterBox,
    Delivery,
    Leases,
    OutgoingMessage,
    bus_leases,
)
from eventcore.store.checkpoint import Checkpoint

__all__ = ["BusWrapper", "ConsumerWrapper"]

_T = TypeVar("_T")


class BusWrapper(Closing):
    """``bus`` (as ``inner``), each call passed on; closing this closes ``bus``."""

    def __init__(self, bus: Bus) -> None:
        self.inner = bus

    async def _call(self, call: str, operation: Callable[[], Awaitable[_T]]) -> _T:
        return await operation()

    def _wrap(self, consumer: Consumer, group: str) -> Consumer:
        return consumer

    @property
    def url(self) -> str:
        return self.inner.url

    @property
    def leases(self) -> Leases:
        """The wrapped bus's leases, as they are (faults are the bus's, not the leases')."""
        return bus_leases(self.inner)

    @property
    def dead_letters(self) -> DeadLetterBox:
        return self.inner.dead_letters

    async def publish(self, messages: Sequence[OutgoingMessage]) -> None:
        await self._call("publish", lambda: self.inner.publish(messages))

    async def consumer(
        self,
        topic: str,
        group: str,
        *,
        member: str | None = None,
        ack_wait: float = DEFAULT_ACK_WAIT,
    ) -> Consumer:
        inner = await self._call(
            "consumer",
            lambda: self.inner.consumer(topic, group, member=member, ack_wait=ack_wait),
        )
        return self._wrap(inner, group)

    async def load_checkpoint(self, name: str) -> Checkpoint | None:
        return await self._call("load_checkpoint", lambda: self.inner.load_checkpoint(name))

    async def save_checkpoint(self, name: str, checkpoint: Checkpoint) -> None:
        await self._call("save_checkpoint", lambda: self.inner.save_checkpoint(name, checkpoint))

    async def aclose(self) -> None:
        await self.inner.aclose()


class ConsumerWrapper:
    """``consumer`` (as ``inner``), each call passed on."""

    def __init__(self, consumer: Consumer) -> None:
        self.inner = consumer

    async def _call(self, call: str, operation: Callable[[], Awaitable[_T]]) -> _T:
        return await operation()

    @property
    def member(self) -> str:
        return self.inner.member

    @property
    def partitions(self) -> frozenset[int]:
        return self.inner.partitions

    async def fetch(self, max_messages: int, timeout: float) -> list[Delivery]:  # noqa: ASYNC109
        return await self._call("fetch", lambda: self.inner.fetch(max_messages, timeout))

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        await self._call("ack", lambda: self.inner.ack(deliveries))

    async def nak(self, delivery: Delivery, delay: float = 0.0) -> None:
        await self._call("nak", lambda: self.inner.nak(delivery, delay))

    async def aclose(self) -> None:
        await self.inner.aclose()
