"""Handling one message for a subscriber: decode it, call its handler, retry, or give up.

Nothing here touches the consumer or the dead-letter box: the outcome says what to do
(ack, ack after parking a letter, or leave unsettled), and the subscriber does it.

What is retried: only failures that may go away. A message that cannot be read, an
event type the subscriber's registry does not know, a payload that does not match its
class, and a handler's ``CommandRejected`` or ``InvalidInput`` give the same answer
every time, so they become dead letters at once. Anything else a handler raises is
retried here, in process, with backoff, so that later messages of the same partition
(the same streams) wait behind it and per-stream order holds.

An outage is not the message's fault: a ``StoreError`` or ``BusError`` from the
handler (the service's own store or bus is down) pauses the partition — the call is
repeated with backoff for as long as it takes, without counting against
``max_deliveries`` — so an outage of any length parks nothing. A *closed* store or bus
(``StoreClosed``, ``BusClosed``) is not an outage: nothing waited out would reopen it,
so it passes out of ``Handling`` and stops the subscriber, the message left unsettled.

Whatever a message does, it fails alone: any other exception out of reading it or out of its
handler (``RecursionError``, ``MemoryError``, an exception whose ``str()`` raises) ends
as an outcome for that message, never as an exception out of ``Handling``. Only
``BaseException``s that are not ``Exception``s pass: cancellation, and what is meant to
end the process (``KeyboardInterrupt``, ``SystemExit``).
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any, Literal

import msgspec

from eventcore.errors import (
    BusClosed,
    BusError,
    CommandRejected,
    InvalidInput,
    StoreClosed,
    StoreError,
    UnknownEventType,
)
from eventcore.instrumentation import DeliveryFinished, DeliveryRetried, DeliveryStarted, FanOut
from eventcore.lifecycle import stopped_within
from eventcore.messaging.bus import DeadLetter, Delivery
from eventcore.messaging.envelope import DistributedEvent, decode_envelope
from eventcore.messaging.inbox import Handler, PayloadTypes, Received
from eventcore.retry import RetryPolicy

__all__ = ["Handling", "Outcome", "describe"]

#: Backoff while the handler's store or bus is down: from the first to the longest wait.
_OUTAGE_BACKOFF = RetryPolicy(max_attempts=1, initial_delay=0.05, max_delay=2.0)

#: What ``error_type`` says when a message was delivered too often to be tried again.
TOO_MANY_DELIVERIES = "TooManyDeliveries"
#: The longest ``reason`` a letter keeps (an exception's message can be any size; the
#: letter must stay small enough for every bus to keep).
MAX_REASON_CHARS = 2000
#: The longest ``error_type`` a letter keeps.
MAX_ERROR_TYPE_CHARS = 200


class Outcome(msgspec.Struct, frozen=True, kw_only=True):
    """What became of one message.

    ``handled`` / ``ignored`` (no handler for its type) / ``dead`` (park ``letter``):
    the message is done and may be acked. ``abandoned``: the subscriber is stopping and
    the message was not finished; it must stay unsettled so it comes again.
    """

    kind: Literal["handled", "ignored", "dead", "abandoned"]
    retries: int = 0
    letter: DeadLetter | None = None
    error: str | None = None


class Handling:
    """Runs messages of one topic through one group's handlers."""

    def __init__(
        self,
        *,
        topic: str,
        group: str,
        handlers: dict[str, Handler],
        registry: PayloadTypes,
        policy: RetryPolicy,
        max_message_bytes: int,
        stopping: asyncio.Event,
        rng: random.Random,
        hooks: FanOut | None = None,
        bus: str = "",
    ) -> None:
        self._topic = topic
        self._group = group
        self._handlers = handlers
        self._registry = registry
        self._policy = policy
        self._max_bytes = max_message_bytes
        self._stopping = stopping
        self._rng = rng
        self._hooks = hooks
        self._bus = bus
        #: The outage a handler is waiting out right now, if any.
        self.outage: str | None = None

    @property
    def max_deliveries(self) -> int:
        return self._policy.max_attempts

    async def delivery(
        self, delivery: Delivery, *, untried: int = 0, blame: bool = False
    ) -> Outcome:
        """Handle a message fetched from the bus.

        ``untried``: deliveries of it this subscriber gave back without trying it (they
        do not count). ``blame``: if the process died while it was in hand, it was the
        only message in hand (the subscriber's careful round, see ``subscriber``), so a
        message delivered too often is parked without another call only then."""
        before = delivery.attempt - 1 - untried
        if before >= self.max_deliveries and blame:
            # Delivered that often yet never settled: handling it may be what kills or
            # hangs the process. Trying once more could do it again.
            reason = (
                f"{TOO_MANY_DELIVERIES}: delivered {delivery.attempt} times without being "
                f"settled; max_deliveries is {self.max_deliveries}"
            )
            return self._dead(delivery, reason, TOO_MANY_DELIVERIES, delivery.attempt, 0)
        # Not to blame, it waited behind the message that was: one call at least.
        tries = max(self.max_deliveries - before, 1)
        return await self._handle(delivery, before, tries, None)

    async def letter(self, letter: DeadLetter) -> Outcome:
        """Handle a dead letter someone asked to retry: a full round of tries again,
        with ``attempts`` counting on from the letter's."""
        delivery = Delivery(
            topic=letter.topic,
            message_id=letter.message_id,
            key=letter.key,
            body=letter.body,
            partition=-1,
            sequence=0,
            attempt=letter.attempts + 1,
            published_at=letter.failed_at,
        )
        return await self._handle(delivery, letter.attempts, self.max_deliveries, letter)

    async def _handle(
        self, delivery: Delivery, before: int, tries: int, letter: DeadLetter | None
    ) -> Outcome:
        """``before``: invocations already made by earlier deliveries; ``tries``: how
        many this call may make."""
        try:
            envelope = decode_envelope(delivery.body, max_bytes=self._max_bytes)
            if envelope.type not in self._registry:
                # The topic carries a type this service does not know: its contract
                # drifted. Parking it keeps it visible instead of silently skipped.
                # The registry names the error (an unknown event, or command, type).
                self._registry.type_of(envelope.type)
                raise UnknownEventType(envelope.type)
        except Exception as error:
            # A ``DecodeError`` by contract; anything else would be a reader's bug, and
            # reading the same bytes again would meet it again.
            return self._failed(delivery, error, before + 1, 0)
        if self._hooks is None:
            return await self._handle_envelope(delivery, envelope, before, tries, letter, None)
        return await self._observed(self._hooks, delivery, envelope, before, tries, letter)

    async def _observed(
        self,
        hooks: FanOut,
        delivery: Delivery,
        envelope: DistributedEvent,
        before: int,
        tries: int,
        letter: DeadLetter | None,
    ) -> Outcome:
        scope = hooks.delivery_started(
            DeliveryStarted(
                topic=self._topic,
                group=self._group,
                message_id=delivery.message_id,
                event_type=envelope.type,
                stream_id=envelope.subject,
                attempt=delivery.attempt,
                occurred_at=envelope.time,
                published_at=delivery.published_at,
                metadata=envelope.metadata,
                bus=self._bus,
            )
        )
        started = time.perf_counter()
        outcome: Outcome | None = None
        try:
            outcome = await self._handle_envelope(delivery, envelope, before, tries, letter, scope)
            return outcome
        finally:
            hooks.delivery_finished(
                DeliveryFinished(
                    topic=self._topic,
                    group=self._group,
                    message_id=delivery.message_id,
                    # None: a closed store or bus, or cancellation, ended the handling.
                    outcome=outcome.kind if outcome is not None else "abandoned",
                    retries=outcome.retries if outcome is not None else 0,
                    error=outcome.error if outcome is not None else None,
                    seconds=time.perf_counter() - started,
                ),
                scope,
            )

    async def _handle_envelope(
        self,
        delivery: Delivery,
        envelope: DistributedEvent,
        before: int,
        tries: int,
        letter: DeadLetter | None,
        scope: object,
    ) -> Outcome:
        handler = self._handlers.get(envelope.type)
        if handler is None:
            return Outcome(kind="ignored")
        try:
            event = self._decode(envelope)
        except Exception as error:
            return self._failed(delivery, error, before + 1, 0)
        received = Received(
            envelope=envelope, event=event, delivery=delivery, group=self._group, letter=letter
        )
        tried = outages = 0
        while True:
            tried += 1
            try:
                await handler(received)
            except (StoreClosed, BusClosed):
                # Closed, not down: no wait would end it. The subscriber stops with the
                # error, and the message, unsettled, comes again to whoever runs next.
                raise
            except (StoreError, BusError) as error:
                tried -= 1
                outages += 1
                self.outage = describe(error)
                if await stopped_within(
                    self._stopping, _OUTAGE_BACKOFF.delay(min(outages, 16), self._rng)
                ):
                    return Outcome(kind="abandoned", retries=tried, error=self.outage)
                continue
            except (CommandRejected, InvalidInput) as error:
                return self._failed(delivery, error, before + tried, tried - 1)
            except Exception as error:
                if tried >= tries:
                    return self._failed(delivery, error, before + tried, tried - 1)
                delay = self._policy.delay(tried, self._rng)
                if self._hooks is not None:
                    self._hooks.delivery_retried(
                        DeliveryRetried(
                            topic=self._topic,
                            group=self._group,
                            message_id=delivery.message_id,
                            attempt=before + tried,
                            error=error,
                            delay=delay,
                        ),
                        scope,
                    )
                if await stopped_within(self._stopping, delay):
                    return Outcome(kind="abandoned", retries=tried - 1, error=describe(error))
            else:
                self.outage = None
                return Outcome(kind="handled", retries=tried - 1)

    def _decode(self, envelope: DistributedEvent) -> Any:
        return self._registry.decode_payload(
            envelope.type, envelope.schema_version, envelope.payload
        )

    def _failed(self, delivery: Delivery, error: Exception, attempts: int, retries: int) -> Outcome:
        return self._dead(delivery, describe(error), _type_name(error), attempts, retries)

    def _dead(
        self, delivery: Delivery, reason: str, error_type: str, attempts: int, retries: int
    ) -> Outcome:
        letter = DeadLetter.of(self._group, delivery, reason, error_type, attempts)
        return Outcome(kind="dead", retries=retries, letter=letter, error=reason)


def describe(error: BaseException) -> str:
    """``"ErrorType: message"``, bounded, for any exception (its ``str()`` may raise)."""
    try:
        text = str(error)
    except Exception:
        text = "(its message could not be shown)"
    return _bounded(f"{_type_name(error)}: {text}", MAX_REASON_CHARS)


def _type_name(error: BaseException) -> str:
    return _bounded(type(error).__name__, MAX_ERROR_TYPE_CHARS)


def _bounded(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = f"… ({len(text) - limit} more characters)"
    return text[: limit - len(cut)] + cut
