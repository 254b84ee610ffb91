"""``PartitionReader``: one member's reading of one partition, through its durable
pull consumer ``{group}-{p}``.

Pull requests go out on a private inbox and what arrives waits in ``buffer`` until a
fetch hands it out. The reader keeps the bus contract's order rule: nothing of the
partition is handed out while an earlier delivery is unsettled, and after a nak (or an
ack deadline that passed) nothing later is handed out before the earlier message came
back. JetStream alone does not promise that: while a nak'ed message waits for its
delay, the consumer goes on with the next ones. So the reader remembers which
sequences must come back first (``_due``); a later message that overtakes them is
nak'ed again at once, unseen, and counted (``_unseen``) so that ``attempt`` still
counts only the deliveries the application saw.
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from eventcore.messaging.bus import Delivery

__all__ = ["PartitionReader"]

#: Seconds a sequence stays "due back" before the reader stops waiting for it (it was
#: acked by a late ack, or purged), on top of the ack wait and nak delay.
_DUE_GRACE = 5.0
#: Seconds a message that overtook a due one waits before it is delivered again.
_OVERTAKEN_DELAY = 0.05
_KEY_HEADER = "Eventcore-Key"
_ID_HEADER = "Nats-Msg-Id"


class PartitionReader:
    def __init__(
        self,
        nc: Client,
        *,
        topic: str,
        partition: int,
        stream: str,
        durable: str,
        ack_wait: float,
        wake: Callable[[], None],
    ) -> None:
        self._nc = nc
        self.topic = topic
        self.partition = partition
        self._next_subject = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}"
        self._ack_wait = ack_wait
        self._wake = wake
        self._inbox = ""
        self._sub: Subscription | None = None
        #: Received, not handed out yet, with when they arrived (monotonic).
        self._buffer: deque[tuple[Msg, float]] = deque()
        #: Handed out, not settled: sequence → (ack subject, handed out at).
        self._unsettled: dict[int, tuple[str, float]] = {}
        #: Sequences that must come back before anything later: sequence → give up at.
        self._due: dict[int, float] = {}
        #: Deliveries the application never saw, per sequence (subtracted from attempt).
        self._unseen: dict[int, int] = {}
        #: Ack subjects of deliveries whose ack deadline passed, for a late ack.
        self._late: dict[int, str] = {}
        self._hold_until = 0.0
        self._pull_until = 0.0
        self._pull_left = 0

    async def start(self) -> None:
        self._inbox = self._nc.new_inbox()
        self._sub = await self._nc.subscribe(self._inbox, cb=self._arrived)

    async def _arrived(self, msg: Msg) -> None:
        headers = msg.headers
        if headers is not None and "Status" in headers:
            if headers["Status"] != "100":  # 404/408/409: the pull request is over
                self._pull_until = 0.0
                self._pull_left = 0
                self._wake()
            return
        self._buffer.append((msg, time.monotonic()))
        self._pull_left -= 1
        if self._pull_left <= 0:
            self._pull_until = 0.0
        self._wake()

    def ready(self, now: float) -> bool:
        """True when a fetch may hand out from this partition now (nothing unsettled,
        no nak delay running)."""
        self._expire(now)
        return not self._unsettled and now >= self._hold_until

    def hold_until(self) -> float:
        return self._hold_until

    async def pull(self, batch: int, expires: float, now: float) -> None:
        """Ask for up to ``batch`` messages unless the buffer has some or a request is open."""
        if self._buffer or now < self._pull_until:
            return
        request = {"batch": batch, "expires": int(max(expires, 0.01) * 1e9)}
        self._pull_left = batch
        # A request whose end (408) got lost in a reconnect is given up a little later.
        self._pull_until = now + expires + 1.0
        await self._nc.publish(self._next_subject, json.dumps(request).encode(), reply=self._inbox)

    def _expire(self, now: float) -> None:
        """Deliveries past their ack deadline will come again: they are due back."""
        for sequence, (reply, handed_at) in list(self._unsettled.items()):
            if now - handed_at > self._ack_wait:
                del self._unsettled[sequence]
                self._late[sequence] = reply
                self._due[sequence] = now + self._ack_wait + _DUE_GRACE
        for sequence, give_up in list(self._due.items()):
            if now > give_up:
                del self._due[sequence]

    async def take(self, limit: int, now: float) -> list[Delivery]:
        """Hand out up to ``limit`` buffered deliveries, in order (call when ``ready``)."""
        taken: list[Delivery] = []
        while self._buffer and len(taken) < limit:
            msg, arrived = self._buffer.popleft()
            meta = msg.metadata
            sequence = meta.sequence.stream
            if now - arrived > self._ack_wait * 0.9:
                # Too old to hand out: JetStream is about to deliver it again.
                self._unseen[sequence] = self._unseen.get(sequence, 0) + 1
                self._due[sequence] = now + self._ack_wait + _DUE_GRACE
                continue
            if sequence in self._unsettled:
                continue
            self._due.pop(sequence, None)
            if self._due and sequence > min(self._due):
                await self._renak(msg, sequence, max(self._hold_until - now, _OVERTAKEN_DELAY))
                self._due[sequence] = now + self._ack_wait + _DUE_GRACE
                continue
            headers = msg.headers or {}
            attempt = meta.num_delivered - self._unseen.get(sequence, 0)
            taken.append(
                Delivery(
                    topic=self.topic,
                    message_id=headers.get(_ID_HEADER, ""),
                    key=headers.get(_KEY_HEADER, ""),
                    body=msg.data,
                    partition=self.partition,
                    sequence=sequence,
                    attempt=max(attempt, 1),
                    published_at=meta.timestamp or datetime.now(UTC),
                )
            )
            self._unsettled[sequence] = (msg.reply, now)
        return taken

    async def _renak(self, msg: Msg, sequence: int, delay: float) -> None:
        """Send back a message the application never saw."""
        self._unseen[sequence] = self._unseen.get(sequence, 0) + 1
        await self._nc.publish(msg.reply, _nak_payload(delay))

    async def ack(self, sequence: int) -> None:
        reply = self._settle(sequence)
        if reply is not None:
            self._unseen.pop(sequence, None)
            await self._nc.publish(reply, b"+ACK")

    def _settle(self, sequence: int) -> str | None:
        held = self._unsettled.pop(sequence, None)
        if held is not None:
            return held[0]
        self._due.pop(sequence, None)
        return self._late.pop(sequence, None)

    async def nak(self, sequence: int, delay: float, now: float) -> None:
        """Send ``sequence`` back, and every later delivery of the partition with it, in
        order, so that they come again after it."""
        if sequence not in self._unsettled:
            return  # settled already, or past its ack deadline (it comes again anyway)
        payload = _nak_payload(delay)
        for later in sorted(s for s in self._unsettled if s >= sequence):
            reply, _ = self._unsettled.pop(later)
            self._due[later] = now + delay + self._ack_wait + _DUE_GRACE
            await self._nc.publish(reply, payload)
        await self._return_buffer(payload, now, delay)
        self._hold_until = max(self._hold_until, now + delay)

    async def _return_buffer(self, payload: bytes, now: float, delay: float) -> None:
        while self._buffer:
            msg, _ = self._buffer.popleft()
            sequence = msg.metadata.sequence.stream
            self._unseen[sequence] = self._unseen.get(sequence, 0) + 1
            self._due[sequence] = now + delay + self._ack_wait + _DUE_GRACE
            await self._nc.publish(msg.reply, payload)

    async def stop(self) -> None:
        """Give everything unsettled or buffered back for the next owner, in order."""
        payload = _nak_payload(0.0)
        for sequence in sorted(self._unsettled):
            reply, _ = self._unsettled.pop(sequence)
            await self._nc.publish(reply, payload)
        await self._return_buffer(payload, time.monotonic(), 0.0)
        if self._sub is not None:
            sub, self._sub = self._sub, None
            await sub.unsubscribe()


def _nak_payload(delay: float) -> bytes:
    if delay <= 0:
        return b"-NAK"
    return b"-NAK " + json.dumps({"delay": int(delay * 1e9)}).encode()
