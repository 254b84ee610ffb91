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

A delivery's ``message_id`` is its ``Nats-Msg-Id`` when the producer gave a usable one
(eventcore's relay always does: the event id). A message from another producer may
have none, or one that no two messages can be told apart by (a header NATS received
as invalid UTF-8, a control character, a kilobyte of text): it is named by its stream
sequence instead, ``seq-{n}``, unique within the topic and the same on every delivery,
so that its dead letter is its own and can be fetched, retried and dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from eventcore.messaging.bus import Delivery
from eventcore.messaging.nats._handover import Handover, extra_attempts

__all__ = ["PartitionReader"]

#: Seconds a sequence stays "due back" before the reader stops waiting for it (it was
#: acked by a late ack, or purged), on top of the ack wait and nak delay.
_DUE_GRACE = 5.0
#: Seconds a message that overtook a due one waits before it is delivered again.
_OVERTAKEN_DELAY = 0.05
#: Seconds to wait for a ``no_wait`` request's answer.
_REQUEST_TIMEOUT = 2.0
#: Longest a request waiting for a message stays open (a member giving the partition up
#: waits that long at most for it to end).
_LONGEST_WAIT = 0.5
_KEY_HEADER = "Eventcore-Key"
_ID_HEADER = "Nats-Msg-Id"
#: The longest message id or key taken from a header (a stream id is at most 255).
_MAX_HEADER_CHARS = 1024
#: Control characters, and the replacement character nats-py reads invalid UTF-8 as
#: (two different invalid ids would read the same).
_UNUSABLE = re.compile("[\x00-\x1f\x7f-\x9f\ufffd]")


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
        #: Until when (monotonic) the open request may still answer; 0.0 when none is open.
        self._open_until = 0.0
        self._pull_left = 0
        #: The last request found the partition empty.
        self._drained = False
        self._done = asyncio.Event()
        self.handover = Handover()
        #: Deliveries made before the consumer was started again (``Handover.extra``).
        self._extra: list[tuple[int, int, int]] = []

    async def start(self, handover: Handover) -> None:
        """Subscribe the inbox; ``handover`` is what the previous owner left (the
        unseen counts, and the attempts of consumers since started again)."""
        self.handover = handover
        self._unseen.update(handover.unseen)
        self._extra = handover.extra
        self._inbox = self._nc.new_inbox()
        self._sub = await self._nc.subscribe(self._inbox, cb=self._arrived)

    @property
    def unseen(self) -> dict[int, int]:
        return dict(self._unseen)

    async def _arrived(self, msg: Msg) -> None:
        headers = msg.headers
        if headers is not None and "Status" in headers:
            status = headers["Status"]
            if status != "100":  # 404/408/409: the request is over
                if status == "404":
                    self._drained = True
                self._end_request()
            return
        # The server says how many of the partition's messages wait behind this one: if
        # none, the next fetch need not ask (a round trip that would find it empty) and
        # ``wait_for_one`` watches it instead, which brings whatever comes meanwhile.
        self._drained = _pending(msg) == 0
        self._buffer.append((msg, time.monotonic()))
        self._pull_left -= 1
        if self._pull_left <= 0:
            self._end_request()

    def _end_request(self) -> None:
        self._open_until = 0.0
        self._pull_left = 0
        self._done.set()
        self._wake()

    def ready(self, now: float) -> bool:
        """True when a fetch may hand out from this partition now (nothing unsettled,
        no nak delay running)."""
        self._expire(now)
        return not self._unsettled and now >= self._hold_until

    def hold_until(self) -> float:
        return self._hold_until

    async def _request(self, request: dict[str, object], count: int, lasts: float) -> None:
        self._pull_left = count
        # A request whose end (a status) got lost in a reconnect is given up a bit later.
        self._open_until = time.monotonic() + lasts + 2.0
        self._done.clear()
        await self._nc.publish(self._next_subject, json.dumps(request).encode(), reply=self._inbox)

    async def fill(self, want: int) -> None:
        """Have up to ``want`` messages in the buffer if the partition has them now:
        one ``no_wait`` request (the server answers at once), awaited. Only what the
        fetch can hand out is asked for, so little waits in the buffer unseen."""
        if self._buffer or time.monotonic() < self._open_until:
            # Whatever is buffered (typically what a ``wait_for_one`` just brought) is
            # handed out at once: asking for more first would put a round trip on the way
            # of every message that comes to an idle partition. The next fetch asks.
            return
        if self._drained:
            return  # found empty last time: ``wait_for_one`` watches it
        await self._request({"batch": want, "no_wait": True}, want, 0.0)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_REQUEST_TIMEOUT):
                await self._done.wait()

    async def wait_for_one(self, expires: float = _LONGEST_WAIT) -> None:
        """Ask the server to send the next message when it comes, within ``expires``.

        For one message only: a request never stays open on the server holding room for
        more, where it would catch messages this member sends back (a nak, giving the
        partition up) for an inbox nobody reads any more."""
        if self._buffer or time.monotonic() < self._open_until:
            return
        expires = min(max(expires, 0.01), _LONGEST_WAIT)
        await self._request({"batch": 1, "expires": int(expires * 1e9)}, 1, expires)

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
            if self._extra:
                attempt += extra_attempts(self._extra, sequence)
            taken.append(
                Delivery(
                    topic=self.topic,
                    message_id=_usable(headers.get(_ID_HEADER)) or f"seq-{sequence}",
                    key=_usable(headers.get(_KEY_HEADER)) or "",
                    body=msg.data,
                    partition=self.partition,
                    sequence=sequence,
                    attempt=max(attempt, 1),
                    published_at=meta.timestamp or datetime.now(UTC),
                    behind=_pending(msg),
                )
            )
            self._unsettled[sequence] = (msg.reply, now)
        return taken

    async def _renak(self, msg: Msg, sequence: int, delay: float) -> None:
        """Send back a message the application never saw."""
        self._unseen[sequence] = self._unseen.get(sequence, 0) + 1
        await self._nc.publish(msg.reply, _nak_payload(delay))

    async def ack(self, sequence: int, *, confirm: bool = False) -> bool:
        """Acknowledge ``sequence``. With ``confirm``, wait for the server's answer to
        this ack, which comes after every earlier message of the connection (the other
        acks) has been processed. False when there was nothing to acknowledge."""
        reply = self._settle(sequence)
        if reply is None:
            return False
        self._unseen.pop(sequence, None)
        if confirm:
            await self._nc.request(reply, b"+ACK", timeout=_REQUEST_TIMEOUT)
        else:
            await self._nc.publish(reply, b"+ACK")
        return True

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

    async def stop(self) -> bool:
        """Give everything unsettled or buffered back for the next owner, in order.

        An open request is let run out first (it may still bring a message, which is
        then given back too); after it, nothing more comes to this inbox.

        True when that was everything this member held of the partition, so that
        JetStream sends it all again before anything later. Not so while some of it is
        due back by itself (after a nak's delay or its ack wait): the next owner could
        be handed later messages before it, and must start the consumer again."""
        clean = not self._due and time.monotonic() >= self._hold_until
        if time.monotonic() < self._open_until:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_LONGEST_WAIT + _REQUEST_TIMEOUT):
                    await self._done.wait()
            # A request whose end never came may still bring a message nobody reads.
            clean = clean and self._done.is_set()
        if self._sub is not None:
            sub, self._sub = self._sub, None
            await sub.unsubscribe()
        payload = _nak_payload(0.0)
        for sequence in sorted(self._unsettled):
            reply, _ = self._unsettled.pop(sequence)
            await self._nc.publish(reply, payload)
        await self._return_buffer(payload, time.monotonic(), 0.0)
        return clean


def _usable(header: str | None) -> str | None:
    """A header's value if it can name a message (or a key), else None."""
    if not header or len(header) > _MAX_HEADER_CHARS or _UNUSABLE.search(header):
        return None
    return header


def _pending(msg: Msg) -> int:
    """How many messages of the consumer wait behind ``msg`` (1 if unknown)."""
    try:
        return msg.metadata.num_pending
    except (ValueError, IndexError, TypeError):
        return 1


def _nak_payload(delay: float) -> bytes:
    if delay <= 0:
        return b"-NAK"
    return b"-NAK " + json.dumps({"delay": int(delay * 1e9)}).encode()
