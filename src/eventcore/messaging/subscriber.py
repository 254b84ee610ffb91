"""``Subscriber``: a durable consumer group member that runs handlers by event type.

The loop: fetch a batch, handle each partition's deliveries in order (partitions side
by side), then settle the whole batch — ack what was handled, ignored or parked as a
dead letter, nak what was not finished. Every ``retry_poll`` seconds it also takes
back the group's dead letters marked for retry and runs them through the same path.

Handling is at least once; the inbox (``Received.run``) makes a command run once per
event and group. What is retried and what is parked at once: see
``_subscriber_handling``.

A batch must be settled before the bus's ``ack_wait`` runs out, or the bus delivers it
again. So the retries of one message may wait at most half of ``ack_wait`` in all
(checked when the subscriber is built), and a partition starts no new delivery once
half of ``ack_wait`` has passed since the fetch: what is left is nak'ed and comes
again at once. A handler that may hang should bound its own time
(``Executor.execute(timeout=...)``). An outage of the service's own store or bus is
the exception: the partition waits it out, however long (``_subscriber_handling``);
if that outlasts ``ack_wait``, the bus may deliver the batch again, and the inbox
absorbs the repeat.

The bus counts deliveries, not handler calls. A message delivered more than
``max_deliveries`` times without being settled is parked without another call: it may
be what keeps killing the process. But only it: a batch holding a repeat is handled one
message at a time, each acked once done, so the message in hand when the process died
is the first of the next such batch, and only the first may be parked for its
deliveries (``_settle_carefully``). Deliveries this subscriber gave back untried (at the
half-time mark, or on ``stop``) are remembered and not counted.

The subscriber is a ``Worker`` (``eventcore.lifecycle``): it is ready once it has
joined its group and its first fetch (which does not wait for messages) has taken the
partitions the assignment gives it — none while the group has more members than
partitions: it stands by, and takes some over as others leave.

No message ends ``run``: whatever reading or handling one raises is that message's
outcome (``_subscriber_handling``), and a dead-letter box that fails to keep a letter
leaves the message unsettled, to come again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Mapping, Sequence

import msgspec

from eventcore._checks import check_seconds, check_whole
from eventcore.errors import BusClosed, BusError, DeadLetterNotFound, InvalidInput
from eventcore.events import Event
from eventcore.instrumentation import (
    DeadLettered,
    DeadLettersCounted,
    DeliveriesFetched,
    Hooks,
    resolve,
)
from eventcore.lifecycle import Readiness, stopped_within, unless_stopped
from eventcore.messaging._claims import unclaimed
from eventcore.messaging._subscriber_handling import Handling, Outcome, describe
from eventcore.messaging.bus import (
    DEFAULT_ACK_WAIT,
    Bus,
    Consumer,
    DeadLetter,
    DeadLetterBox,
    Delivery,
    bus_kind,
)
from eventcore.messaging.envelope import DEFAULT_MAX_MESSAGE_BYTES
from eventcore.messaging.inbox import Handler, PayloadTypes, Received, event_type_of
from eventcore.messaging.names import check_name
from eventcore.retry import RetryPolicy

__all__ = [
    "Handler",
    "Received",
    "Subscriber",
    "SubscriberStatus",
    "dead_lettered",
    "fetch_unless_stopped",
]

#: The longest a fetch waits for a first message before the loop looks around again.
_FETCH_WAIT = 1.0
_logger = logging.getLogger(__name__)

#: The most deliveries given back untried that a subscriber remembers.
_MAX_UNTRIED = 100_000

#: A delivery's place: (partition, sequence).
_Key = tuple[int, int]


def _key(delivery: Delivery) -> _Key:
    return (delivery.partition, delivery.sequence)


class SubscriberStatus(msgspec.Struct, frozen=True, kw_only=True):
    """What a subscriber has done since it started.

    ``retried`` counts handler calls repeated after a failure; ``last_error`` is the
    latest failure (a handler's, or the bus's) as ``"ErrorType: message"``.
    """

    topic: str
    group: str
    member: str | None
    partitions: tuple[int, ...]
    handled: int
    ignored: int
    retried: int
    dead_lettered: int
    last_error: str | None


class Subscriber:
    """Runs ``handlers`` on ``topic`` as a member of consumer ``group``; see the module
    docs for the loop and its guarantees.

    ``handlers`` is a list of handlers, each for the event class its parameter is
    annotated with (``received: Received[UserRegistered]``), or a dict of event type
    name or class → handler."""

    def __init__(
        self,
        bus: Bus,
        topic: str,
        handlers: Mapping[str | type[Event], Handler] | Sequence[Handler],
        *,
        group: str,
        registry: PayloadTypes,
        max_deliveries: int = 5,
        retry_backoff: tuple[float, float] = (0.05, 2.0),
        batch_size: int = 256,
        ack_wait: float = DEFAULT_ACK_WAIT,
        member: str | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        retry_poll: float = 2.0,
        hooks: Hooks | None = None,
    ) -> None:
        self._bus = bus
        self._topic = check_name("topic", topic)
        self._group = check_name("group", group)
        self._member = member
        check_whole("max_deliveries", max_deliveries)
        check_whole("batch_size", batch_size)
        check_whole("max_message_bytes", max_message_bytes)
        check_seconds("ack_wait", ack_wait)
        check_seconds("retry_poll", retry_poll)
        self._batch_size = batch_size
        self._ack_wait = float(ack_wait)
        self._retry_poll = float(retry_poll)
        policy = _policy(max_deliveries, retry_backoff, ack_wait)
        self._stopping = asyncio.Event()
        self._hooks = resolve(hooks)
        self._handling = Handling(
            topic=topic,
            group=group,
            handlers=_handlers_by_type(handlers, registry),
            registry=registry,
            policy=policy,
            max_message_bytes=max_message_bytes,
            stopping=self._stopping,
            rng=random.Random(),
            hooks=self._hooks,
            bus=bus_kind(bus) if self._hooks is not None else "",
        )
        self._consumer: Consumer | None = None
        self._readiness = Readiness(f"subscriber of group {group!r} on {topic!r}")
        #: Deliveries given back without being tried, per (partition, sequence).
        self._untried: dict[_Key, int] = {}
        self._handled = self._ignored = self._retried = self._dead_lettered = 0
        self._last_error: str | None = None
        #: Counting the group's dead letters costs a query: only for a hook that wants it.
        self._count_letters = self._hooks is not None and self._hooks.wants("dead_letters_counted")

    @property
    def topic(self) -> str:
        return self._topic

    @property
    def group(self) -> str:
        return self._group

    def status(self) -> SubscriberStatus:
        consumer = self._consumer
        return SubscriberStatus(
            topic=self._topic,
            group=self._group,
            member=consumer.member if consumer is not None else self._member,
            partitions=tuple(sorted(consumer.partitions)) if consumer is not None else (),
            handled=self._handled,
            ignored=self._ignored,
            retried=self._retried,
            dead_lettered=self._dead_lettered,
            last_error=self._handling.outage or self._last_error,
        )

    def stop(self) -> None:
        """Ask ``run`` to return: it finishes (or gives back) the batch in hand and
        leaves the group."""
        self._stopping.set()
        self._readiness.stopped()

    async def ready(self) -> None:
        """Return once ``run`` has joined the group and taken its partitions; raise what
        failed ``run`` before that (the bus's error), or ``WorkerStopped``."""
        await self._readiness.wait()

    async def run(self) -> None:
        """Join the group and handle messages until ``stop``.

        Raises the bus's error if it cannot join, ``BusClosed`` if the bus is closed
        under it, and ``StoreClosed`` or ``BusClosed`` that a handler meets (a closed
        resource is not an outage: nothing would reopen it); once joined, other bus
        failures are waited out (``retry_poll``) and ``status().last_error`` shows them."""
        if self._stopping.is_set():
            return
        try:
            consumer = await self._bus.consumer(
                self._topic, self._group, member=self._member, ack_wait=self._ack_wait
            )
            self._consumer = consumer
            _logger.info(
                "subscriber %s/%s: member %s joined, owns partitions %s",
                self._topic,
                self._group,
                consumer.member,
                sorted(consumer.partitions),
            )
            try:
                await self._loop(consumer)
            finally:
                # Leaving hands this member's partitions (and anything unsettled) to the
                # others; it must happen even when run() is cancelled.
                await asyncio.shield(consumer.aclose())
                _logger.info(
                    "subscriber %s/%s: member %s left (%d handled, %d dead-lettered)",
                    self._topic,
                    self._group,
                    consumer.member,
                    self._handled,
                    self._dead_lettered,
                )
        except BaseException as error:
            self._readiness.fail(error)
            raise

    async def _loop(self, consumer: Consumer) -> None:
        next_retry_poll = time.monotonic()
        names = (self._topic, self._group)
        outage = False
        owned = consumer.partitions
        while not self._stopping.is_set():
            try:
                if time.monotonic() >= next_retry_poll:
                    await self._run_retries()
                    await self._count_dead_letters()
                    next_retry_poll = time.monotonic() + self._retry_poll
                wait = min(_FETCH_WAIT, max(0.0, next_retry_poll - time.monotonic()))
                # The first fetch takes the partitions without waiting for a message:
                # the subscriber is ready once it has them.
                ready = self._readiness.is_ready
                deliveries = await fetch_unless_stopped(
                    consumer, self._batch_size, self._stopping, wait if ready else 0.0
                )
                self._readiness.set()
                if outage:
                    outage = False
                    _logger.info("subscriber %s/%s: the bus answers again", *names)
                if consumer.partitions != owned:
                    owned = consumer.partitions
                    _logger.info(
                        "subscriber %s/%s: member %s now owns partitions %s",
                        *names,
                        consumer.member,
                        sorted(owned),
                    )
                if self._hooks is not None:
                    self._hooks.deliveries_fetched(
                        DeliveriesFetched(
                            topic=self._topic,
                            group=self._group,
                            member=consumer.member,
                            count=len(deliveries),
                            lag_events=_lag(deliveries),
                        )
                    )
                if deliveries:
                    await self._settle(consumer, deliveries)
            except BusClosed:
                raise
            except BusError as error:
                # The bus is down or failed mid-call: anything unsettled comes again
                # after ack_wait, and the inbox absorbs what was already done.
                self._last_error = describe(error)
                if not outage:
                    outage = True
                    _logger.warning(
                        "subscriber %s/%s: the bus failed (%s); trying again every %g s",
                        *names,
                        self._last_error,
                        self._retry_poll,
                    )
                if await stopped_within(self._stopping, self._retry_poll):
                    return

    async def _settle(self, consumer: Consumer, deliveries: Sequence[Delivery]) -> None:
        """Handle one fetched batch and settle every delivery of it."""
        if any(self._attempts(delivery) > 1 for delivery in deliveries):
            await self._settle_carefully(consumer, deliveries)
            return
        partitions: dict[int, list[Delivery]] = {}
        for delivery in deliveries:
            partitions.setdefault(delivery.partition, []).append(delivery)
        tried: set[_Key] = set()
        finished: set[_Key] = set()
        deadline = time.monotonic() + self._ack_wait / 2
        try:
            async with asyncio.TaskGroup() as tasks:
                for batch in partitions.values():
                    tasks.create_task(self._partition(batch, tried, finished, deadline))
        except asyncio.CancelledError:
            await self._ack_finished(consumer, deliveries, finished)
            raise
        except BaseExceptionGroup as failures:
            # A closed store or bus (the only errors Handling lets out) ends run(): raised
            # as itself, so a caller catches StoreClosed rather than unpacks a group.
            await self._ack_finished(consumer, deliveries, finished)
            if len(failures.exceptions) == 1:
                raise failures.exceptions[0] from None
            raise
        done = [d for d in deliveries if _key(d) in finished]
        if done:
            await consumer.ack(done)
            self._forget(done)
        await self._give_back(consumer, [d for d in deliveries if _key(d) not in finished], tried)

    async def _ack_finished(
        self, consumer: Consumer, deliveries: Sequence[Delivery], finished: set[_Key]
    ) -> None:
        """On the way out: ack what was finished if the bus still takes it; the rest
        stays unsettled and is given back when run() leaves the group."""
        done = [d for d in deliveries if _key(d) in finished]
        if done:
            with contextlib.suppress(Exception):
                await asyncio.shield(consumer.ack(done))

    async def _partition(
        self,
        deliveries: list[Delivery],
        tried: set[_Key],
        finished: set[_Key],
        deadline: float,
    ) -> None:
        """One partition's deliveries, in order, stopping at the first not finished."""
        for delivery in deliveries:
            if self._stopping.is_set() or time.monotonic() > deadline:
                return
            tried.add(_key(delivery))
            outcome = await self._handling.delivery(delivery, untried=self._untried_of(delivery))
            if not await self._conclude(outcome):
                return
            finished.add(_key(delivery))

    async def _settle_carefully(self, consumer: Consumer, deliveries: Sequence[Delivery]) -> None:
        """A batch that holds a repeat: a message delivered before and never settled,
        perhaps because the process died while handling it (or it was handed over from a
        member that died). Its deliveries are handled one at a time, the partition whose
        first message was delivered most often first, and each is acked as soon as it is
        done. Should the process die again, the message in hand is then the only one to
        blame: it comes first in the next careful round, and only the first message of a
        round may be parked as delivered too often. A message that waited behind it was
        delivered as often but is never parked for that."""
        partitions: dict[int, list[Delivery]] = {}
        for delivery in deliveries:
            partitions.setdefault(delivery.partition, []).append(delivery)
        order = sorted(
            partitions.values(), key=lambda batch: (-self._attempts(batch[0]), batch[0].partition)
        )
        deadline = time.monotonic() + self._ack_wait / 2
        tried: set[_Key] = set()
        left: list[Delivery] = []
        for batch in order:
            for index, delivery in enumerate(batch):
                if self._stopping.is_set() or time.monotonic() > deadline:
                    left += batch[index:]
                    break
                blame = not tried
                tried.add(_key(delivery))
                outcome = await self._handling.delivery(
                    delivery, untried=self._untried_of(delivery), blame=blame
                )
                if not await self._conclude(outcome):
                    left += batch[index:]
                    break
                await consumer.ack([delivery])
                self._forget([delivery])
        await self._give_back(consumer, left, tried)

    async def _give_back(
        self, consumer: Consumer, deliveries: Sequence[Delivery], tried: set[_Key]
    ) -> None:
        """Nak what was not finished, and remember which of it was never tried: the bus
        counts those deliveries, but the message had no chance to fail in them."""
        for delivery in deliveries:
            await consumer.nak(delivery)
            key = _key(delivery)
            if key not in tried:
                if len(self._untried) >= _MAX_UNTRIED:
                    # Only partitions handed to other members leave entries behind; when
                    # too many piled up, forgetting them costs at most one careful round.
                    self._untried.clear()
                self._untried[key] = self._untried.get(key, 0) + 1

    def _untried_of(self, delivery: Delivery) -> int:
        return self._untried.get(_key(delivery), 0)

    def _attempts(self, delivery: Delivery) -> int:
        """Deliveries of the message in which it was, or may have been, handled."""
        return delivery.attempt - self._untried_of(delivery)

    def _forget(self, deliveries: Sequence[Delivery]) -> None:
        if self._untried:
            for delivery in deliveries:
                self._untried.pop(_key(delivery), None)

    async def _run_retries(self) -> None:
        """Run the group's dead letters marked for retry, up to a batch, one claim at a
        time. A claimed letter stays in the box until it is handled (then dropped) or
        given back; should this process die in between, its claim runs out after
        ``ack_wait`` and another member claims the letter again. A handler outlasting
        that may see the letter twice, which the inbox absorbs, as for a delivery."""
        box = self._bus.dead_letters
        holder = self._consumer.member if self._consumer is not None else ""
        for _ in range(self._batch_size):
            if self._stopping.is_set():
                return
            taken = await box.claim_retries(
                self._group, self._topic, 1, holder=holder, lease=self._ack_wait
            )
            if not taken:
                return
            letter = taken[0]
            finished = False
            try:
                outcome = await self._handling.letter(letter)
                finished = await self._conclude(outcome)
            finally:
                if not finished:
                    await asyncio.shield(_give_back(box, letter))
            if not finished:
                return
            if outcome.letter is None:
                # Handled or ignored: done with. Parked again, it was replaced instead.
                with contextlib.suppress(DeadLetterNotFound):
                    await box.drop(letter.letter_id)

    async def _count_dead_letters(self) -> None:
        """Report how many letters the group holds on this topic, for a hook that
        wants it (a gauge): the box is the truth, whoever parked or dropped them."""
        if self._hooks is None or not self._count_letters:
            return
        count = await self._bus.dead_letters.count(group=self._group, topic=self._topic)
        self._hooks.dead_letters_counted(
            DeadLettersCounted(topic=self._topic, group=self._group, count=count)
        )

    async def _conclude(self, outcome: Outcome) -> bool:
        """Count ``outcome`` and park its letter; False if the message is not finished."""
        self._retried += outcome.retries
        if outcome.error is not None:
            self._last_error = outcome.error
        if outcome.kind == "abandoned":
            return False
        if outcome.letter is not None:
            try:
                await self._bus.dead_letters.put(outcome.letter)
            except Exception as error:
                # A BusError: the bus is down, the message comes again. Anything else is
                # the box's defect, contained like a handler's: the message is left
                # unsettled rather than lost, and run() goes on.
                self._last_error = describe(error)
                return False
            self._dead_lettered += 1
            letter = outcome.letter
            _logger.warning(
                "subscriber %s/%s: parked message %s after %d attempts: %s",
                letter.topic,
                letter.group,
                letter.message_id,
                letter.attempts,
                letter.reason,
            )
            if self._hooks is not None:
                self._hooks.dead_lettered(dead_lettered(letter))
        elif outcome.kind == "ignored":
            self._ignored += 1
        else:
            self._handled += 1
        return True


async def fetch_unless_stopped(
    consumer: Consumer, batch_size: int, stopping: asyncio.Event, wait: float
) -> list[Delivery]:
    """``consumer.fetch(batch_size, wait)``, cut short (to no deliveries) once ``stopping``
    is set. A fetch cut short may have taken deliveries out; leaving the group
    (``aclose``) gives them back."""
    fetched = await unless_stopped(consumer.fetch(batch_size, wait), stopping)
    return [] if fetched is None else fetched


def dead_lettered(letter: DeadLetter) -> DeadLettered:
    """What the hooks are told of a letter just parked, by whichever worker parked it
    (a subscriber, the federation hub)."""
    return DeadLettered(
        topic=letter.topic,
        group=letter.group,
        message_id=letter.message_id,
        reason=letter.reason,
        error_type=letter.error_type,
        attempts=letter.attempts,
    )


def _lag(deliveries: Sequence[Delivery]) -> int | None:
    """Messages of the fetched partitions not yet handled: each partition's deliveries
    and what its last one has behind it. 0 for an empty fetch: nothing is waiting that
    this member could take now."""
    last: dict[int, Delivery] = {}
    taken: dict[int, int] = {}
    for delivery in deliveries:
        last[delivery.partition] = delivery
        taken[delivery.partition] = taken.get(delivery.partition, 0) + 1
    lag = 0
    for partition, delivery in last.items():
        if delivery.behind is None:
            return None
        lag += taken[partition] + delivery.behind
    return lag


async def _give_back(box: DeadLetterBox, letter: DeadLetter) -> None:
    """Mark a claimed letter for retry again; if the bus fails, its claim runs out."""
    with contextlib.suppress(BusError):
        await box.put(unclaimed(letter))


def _handlers_by_type(
    handlers: Mapping[str | type[Event], Handler] | Sequence[Handler], registry: PayloadTypes
) -> dict[str, Handler]:
    pairs: list[tuple[str | type[Event], Handler]] = []
    if isinstance(handlers, Mapping):
        pairs = list(handlers.items())
    elif isinstance(handlers, Sequence) and not isinstance(handlers, str):
        pairs = [(event_type_of(handler), handler) for handler in handlers]
    if not pairs:
        raise InvalidInput(
            "a subscriber needs at least one handler: a list of handlers taking "
            "Received[EventClass], or a dict {EventClass: handler}"
        )
    by_type: dict[str, Handler] = {}
    for key, handler in pairs:
        if isinstance(key, str) and key:
            name = key
        elif isinstance(key, type) and issubclass(key, Event):
            name = key.__event_type__
        else:
            raise InvalidInput(f"{key!r} is neither an event type name nor an Event class")
        if name not in registry:
            # Its messages would all become dead letters as an unknown type.
            raise InvalidInput(f"a handler for {name!r}, which the registry does not know")
        if name in by_type:
            raise InvalidInput(f"two handlers for event type {name!r}")
        if not callable(handler):
            raise InvalidInput(f"the handler for {name!r} is not callable: {handler!r}")
        by_type[name] = handler
    return by_type


def _policy(max_deliveries: int, backoff: tuple[float, float], ack_wait: float) -> RetryPolicy:
    try:
        initial, cap = backoff
    except (TypeError, ValueError):
        raise InvalidInput(
            f"retry_backoff must be (initial, cap) seconds, got {backoff!r}"
        ) from None
    for value in (initial, cap):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidInput(f"retry_backoff must be (initial, cap) seconds, got {backoff!r}")
    policy = RetryPolicy(max_attempts=max_deliveries, initial_delay=initial, max_delay=cap)
    longest = sum(policy.ceiling(attempt) for attempt in range(1, max_deliveries))
    if longest > ack_wait / 2:
        raise InvalidInput(
            f"the retries of one message could wait {longest:g} s in all, more than half "
            f"of ack_wait ({ack_wait:g} s): the bus would deliver it again meanwhile; "
            "lower max_deliveries or retry_backoff, or raise ack_wait"
        )
    return policy
