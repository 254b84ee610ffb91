"""``Hub``: the federation hub's worker — read each source, route, publish, then ack.

For every (bus, topic) a rule reads, the hub is a member of its consumer group
(``group``, ``"federation"`` by default) on that topic, and loops the way the bus
contract asks of a consumer: fetch a batch, route every event of it (``route``, the
pure core), publish every copy to its targets, park the events whose transformations
failed in the hub's dead letters (the source bus's box, under the hub's group, with
the reason), and only then acknowledge the whole batch. So the source is acknowledged
only once every target bus acknowledged every copy. Every ``retry_poll`` seconds it
also takes back its letters marked for retry (``eventcore dlq retry``) and routes them
again the same way.

Exactly once in effect: a copy's id comes from (rule, original id) alone, so a batch
read again — the hub was killed between publishing and acknowledging, or a target
failed halfway — republishes the same ids, which the target bus de-duplicates
(``Nats-Msg-Id``, the SQLite bus's (topic, message id)) and a consumer's inbox absorbs.
Copies keep the original's subject (the stream id) as their key, and a batch's copies
go out in the order the source handed them, so each stream's events reach a target
partition in order.

Failures: an event that cannot be read, or that a rule's transformations fail on, is
that event's own outcome (a dead letter; the other rules' copies still go out) and
never stops the hub. A bus that fails (``BusError``) is an outage: what was fetched is
sent back (``nak``) and the source is read again after ``retry_poll``; a *closed* bus
(``BusClosed``) ends ``run``, as for every worker. The hub is a ``Worker``: ready once
it has joined the group of every source and taken its partitions.

Lag and counts go to the instrumentation seam (``FederationBatch``), one record per
batch: nothing is built when no hook is installed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

import msgspec

from eventcore._checks import check_seconds, check_whole
from eventcore.errors import (
    BusClosed,
    BusError,
    DeadLetterNotFound,
    InvalidInput,
)
from eventcore.federation._batch import Batch
from eventcore.federation.config import HubConfig
from eventcore.federation.rules import Origin, Rule
from eventcore.instrumentation import FederationBatch, Hooks, resolve
from eventcore.lifecycle import Readiness, stopped_within
from eventcore.messaging.bus import (
    DEFAULT_ACK_WAIT,
    Bus,
    Consumer,
    Delivery,
    OutgoingMessage,
)
from eventcore.messaging.envelope import DEFAULT_MAX_MESSAGE_BYTES
from eventcore.messaging.names import check_name
from eventcore.messaging.subscriber import dead_lettered, fetch_unless_stopped

__all__ = ["DEFAULT_GROUP", "Hub", "HubStatus", "SourceStatus"]

#: The consumer group the hub reads its sources as, unless told otherwise.
DEFAULT_GROUP = "federation"
#: The longest a fetch waits for a first message before the loop looks around again.
_FETCH_WAIT = 1.0

_logger = logging.getLogger(__name__)


class SourceStatus(msgspec.Struct, frozen=True, kw_only=True):
    """One source the hub reads: ``origin`` is ``<bus alias>/<topic>``; ``lag_seconds``
    how long the last batch's newest message had been on the source bus when the batch
    was settled (None before the first)."""

    origin: str
    member: str | None
    partitions: tuple[int, ...]
    received: int
    lag_seconds: float | None


class HubStatus(msgspec.Struct, frozen=True, kw_only=True):
    """What the hub has done since it started. ``routed`` counts copies made (one per
    matching rule, published to each of its targets); ``unmatched`` events no rule
    took; ``dead_lettered`` events parked (unreadable, or a transformation failed);
    ``retried`` dead letters taken back (``eventcore dlq retry``) and routed again."""

    group: str
    sources: tuple[SourceStatus, ...]
    received: int
    routed: int
    unmatched: int
    dead_lettered: int
    retried: int
    last_error: str | None


class _Source:
    """The hub's reading of one origin."""

    def __init__(self, origin: Origin, bus: Bus, rules: tuple[Rule, ...]) -> None:
        self.origin = origin
        self.text = str(origin)
        self.bus = bus
        # Only the rules that read here: the others could never match its events.
        self.rules = rules
        self.consumer: Consumer | None = None
        self.received = 0
        self.lag: float | None = None
        self.ready = False


class Hub:
    """Routes events between buses by the rules of ``config``; see the module docs.

    ``buses`` maps every bus alias of the configuration to an open bus (the caller opens
    and closes them: ``eventcore federate run`` does). ``member`` names this hub's
    member in each group: a hub restarted in place under the same name takes its
    partitions back at once instead of waiting for its predecessor's leases to run out.
    """

    def __init__(
        self,
        config: HubConfig,
        buses: Mapping[str, Bus],
        *,
        group: str = DEFAULT_GROUP,
        member: str | None = None,
        batch_size: int = 500,
        ack_wait: float = DEFAULT_ACK_WAIT,
        retry_poll: float = 2.0,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        hooks: Hooks | None = None,
    ) -> None:
        if not isinstance(config, HubConfig):
            raise InvalidInput(f"expected a HubConfig (load_config), got {type(config).__name__}")
        missing = sorted(set(config.buses) - set(buses))
        if missing:
            raise InvalidInput(
                f"no open bus for the alias(es) {', '.join(missing)} of {config.file}"
            )
        self._group = check_name("group", group)
        self._member = check_name("member", member) if member is not None else None
        check_whole("batch_size", batch_size)
        check_whole("max_message_bytes", max_message_bytes)
        check_seconds("ack_wait", ack_wait)
        check_seconds("retry_poll", retry_poll)
        self._config = config
        self._buses = dict(buses)
        self._batch_size = batch_size
        self._ack_wait = float(ack_wait)
        self._retry_poll = float(retry_poll)
        self._max_bytes = max_message_bytes
        self._hooks = resolve(hooks)
        self._sources = [
            _Source(
                origin,
                self._buses[origin.bus],
                tuple(rule for rule in config.rules if rule.source.origin == origin),
            )
            for origin in config.origins
        ]
        self._stopping = asyncio.Event()
        self._readiness = Readiness(f"federation hub {group!r}")
        self._routed = self._unmatched = self._dead_lettered = self._retried = 0
        self._last_error: str | None = None

    @property
    def group(self) -> str:
        return self._group

    def status(self) -> HubStatus:
        sources = []
        for source in self._sources:
            consumer = source.consumer
            sources.append(
                SourceStatus(
                    origin=source.text,
                    member=consumer.member if consumer is not None else self._member,
                    partitions=tuple(sorted(consumer.partitions)) if consumer else (),
                    received=source.received,
                    lag_seconds=source.lag,
                )
            )
        return HubStatus(
            group=self._group,
            sources=tuple(sources),
            received=sum(source.received for source in self._sources),
            routed=self._routed,
            unmatched=self._unmatched,
            dead_lettered=self._dead_lettered,
            retried=self._retried,
            last_error=self._last_error,
        )

    def stop(self) -> None:
        """Ask ``run`` to return: each source finishes (or sends back) its batch in hand
        and leaves its group."""
        self._stopping.set()
        self._readiness.stopped()

    async def ready(self) -> None:
        """Return once every source's group is joined and its partitions taken."""
        await self._readiness.wait()

    async def run(self) -> None:
        """Read every source until ``stop``; raise ``BusClosed`` if a bus is closed under
        the hub, or the bus's error if a group cannot be joined."""
        if self._stopping.is_set():
            return
        try:
            async with asyncio.TaskGroup() as tasks:
                for source in self._sources:
                    tasks.create_task(self._read(source))
        except BaseExceptionGroup as failures:
            error = failures.exceptions[0] if len(failures.exceptions) == 1 else failures
            self._readiness.fail(error)
            raise error from None
        except BaseException as error:
            self._readiness.fail(error)
            raise

    async def _read(self, source: _Source) -> None:
        consumer = await source.bus.consumer(
            source.origin.topic, self._group, member=self._member, ack_wait=self._ack_wait
        )
        source.consumer = consumer
        _logger.info(
            "federation hub %s: reading %s as member %s (partitions %s)",
            self._group,
            source.text,
            consumer.member,
            sorted(consumer.partitions),
        )
        try:
            await self._loop(source, consumer)
        finally:
            # Leaving hands the partitions (and anything unsettled) back to the group;
            # it must happen even when run() is cancelled.
            await asyncio.shield(consumer.aclose())

    def _note_ready(self, source: _Source) -> None:
        if not source.ready:
            source.ready = True
            if all(each.ready for each in self._sources):
                self._readiness.set()

    async def _loop(self, source: _Source, consumer: Consumer) -> None:
        outage = False
        next_retry_poll = time.monotonic()
        while not self._stopping.is_set():
            try:
                if source.ready and time.monotonic() >= next_retry_poll:
                    await self._run_retries(source, consumer)
                    next_retry_poll = time.monotonic() + self._retry_poll
                wait = min(_FETCH_WAIT, max(0.0, next_retry_poll - time.monotonic()))
                # The first fetch takes the partitions without waiting for a message.
                deliveries = await fetch_unless_stopped(
                    consumer, self._batch_size, self._stopping, wait if source.ready else 0.0
                )
                self._note_ready(source)
                if outage:
                    outage = False
                    _logger.info("federation hub %s: %s answers again", self._group, source.text)
                if deliveries:
                    await self._forward(source, consumer, deliveries)
            except BusClosed:
                raise
            except BusError as error:
                # Whatever was not acknowledged comes again (after ack_wait at worst),
                # and is published again under the same ids.
                self._last_error = f"{type(error).__name__}: {error}"
                if not outage:
                    outage = True
                    _logger.warning(
                        "federation hub %s: a bus failed while forwarding %s (%s); trying "
                        "again every %g s",
                        self._group,
                        source.text,
                        self._last_error,
                        self._retry_poll,
                    )
                if await stopped_within(self._stopping, self._retry_poll):
                    return

    async def _forward(
        self, source: _Source, consumer: Consumer, deliveries: Sequence[Delivery]
    ) -> None:
        """Route one batch, publish its copies, park its failures, then ack it all."""
        started = time.perf_counter()
        routed = self._batch(source)
        for delivery in deliveries:
            routed.add(delivery, delivery.attempt)
        try:
            await self._publish(routed.outgoing)
            for letter in routed.letters:
                await source.bus.dead_letters.put(letter)
        except BusError as error:
            if not isinstance(error, BusClosed):
                await self._give_back(consumer, deliveries)
            raise
        await consumer.ack(deliveries)
        source.received += len(deliveries)
        now = datetime.now(UTC)
        source.lag = max(0.0, (now - deliveries[-1].published_at).total_seconds())
        self._settled(source, routed, len(deliveries), started)

    async def _run_retries(self, source: _Source, consumer: Consumer) -> None:
        """Route again the letters of this source marked for retry (``eventcore dlq
        retry``), one batch: a letter whose rules all succeed now is dropped, one that
        fails again is parked again with the new reason. Should the hub die on the way,
        the claims run out after ``ack_wait`` and the letters are claimed again; their
        copies, published again, keep their ids."""
        box = source.bus.dead_letters
        letters = await box.claim_retries(
            self._group,
            source.origin.topic,
            self._batch_size,
            holder=consumer.member,
            lease=self._ack_wait,
        )
        if not letters:
            return
        started = time.perf_counter()
        routed = self._batch(source)
        for letter in letters:
            routed.add(letter, letter.attempts + 1)
        await self._publish(routed.outgoing)
        parked = {letter.letter_id for letter in routed.letters}
        for letter in routed.letters:
            await box.put(letter)
        for letter in letters:
            if letter.letter_id not in parked:
                with contextlib.suppress(DeadLetterNotFound):
                    await box.drop(letter.letter_id)
        self._retried += len(letters)
        self._settled(source, routed, len(letters), started)

    def _batch(self, source: _Source) -> Batch:
        return Batch(self._group, source.origin, source.rules, self._max_bytes)

    def _settled(self, source: _Source, routed: Batch, events: int, started: float) -> None:
        """Count what a batch (or a round of retries) came to, and tell the hooks."""
        self._routed += routed.copies
        self._unmatched += routed.unmatched
        self._dead_lettered += len(routed.letters)
        letters = routed.letters
        hooks = self._hooks
        if hooks is not None:
            for letter in letters:
                hooks.dead_lettered(dead_lettered(letter))
            hooks.federation_batch(
                FederationBatch(
                    group=self._group,
                    origin=source.text,
                    events=events,
                    outcomes=tuple((rule, kind, n) for (rule, kind), n in routed.outcomes.items()),
                    lag_seconds=source.lag or 0.0,
                    seconds=time.perf_counter() - started,
                )
            )
        for letter in letters:
            _logger.warning(
                "federation hub %s: parked message %s of %s: %s",
                self._group,
                letter.message_id,
                source.text,
                letter.reason,
            )

    async def _publish(self, outgoing: dict[str, list[OutgoingMessage]]) -> None:
        """Every target bus's share at once; the first failure if one fails."""
        if len(outgoing) == 1:
            ((alias, messages),) = outgoing.items()
            await self._buses[alias].publish(messages)
            return
        try:
            async with asyncio.TaskGroup() as publishing:
                for alias, messages in outgoing.items():
                    publishing.create_task(self._buses[alias].publish(messages))
        except BaseExceptionGroup as failures:
            raise _single(failures) from None

    async def _give_back(self, consumer: Consumer, deliveries: Sequence[Delivery]) -> None:
        """After a failed publish: send the batch back so it comes again in order.

        A nak brings the later deliveries of its partition back after it, so only each
        partition's first is sent back: one call per partition rather than per message,
        and a call that fails costs its own partition alone (it comes again after
        ``ack_wait``), not every partition after it."""
        firsts: dict[int, Delivery] = {}
        for delivery in deliveries:
            firsts.setdefault(delivery.partition, delivery)
        for delivery in firsts.values():
            with contextlib.suppress(BusError):
                await consumer.nak(delivery, self._retry_poll)


def _single(error: BaseException) -> BaseException:
    """The error itself, or the first of a group of publishes that failed."""
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    return error
