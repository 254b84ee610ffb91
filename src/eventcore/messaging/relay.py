"""``Relay``: the transactional outbox's second half.

The store is the outbox. A command's events commit once, in the service's own
store; the relay follows the store's global log (``LogFollower``) and publishes each
event whose type the service's ``TopicMap`` names, as a ``DistributedEvent`` with the
event id as message id and the stream id as key. There is no dual write to lose.

Publishing is pipelined: each batch the follower yields goes to the bus at once, and
up to ``window`` messages may be waiting for the bus's acknowledgement. Batches are
settled strictly in log order, and the checkpoint (kept in the bus, named after the
service) moves only past batches the bus has acknowledged. Killed anywhere, the relay
starts again from its checkpoint: it may publish a message twice (the bus drops
duplicates by message id; the subscriber's inbox drops what gets through), and it
never skips one.

Commands sent over the bus and their replies (``eventcore.messaging.commands``) are
stored events too: a ``CommandRequested`` is published to its target's command topic
as a command message, a ``CommandReplied`` to the topic its request named, whatever
the topic map says (they are addressed, not facts a service chooses to publish).

A batch the bus refuses (``BusError``: the server is down, a timeout) is published
again, with backoff, until the bus takes it; batches behind it wait. The relay never
gives up and never moves past an event it could not publish: a stuck relay shows in
its lag and ``last_error``, not as a lost event. A closed bus or store (``BusClosed``,
``StoreClosed``) is not an outage — nothing would reopen it — and ends ``run`` with
that error at once; the checkpoint stays where the bus last took it.

The relay is a ``Worker`` (``eventcore.lifecycle``): it is ready once it has loaded
its checkpoint and knows where it starts.

The checkpoint is bound to the store it counts: it keeps the store's id
(``EventStore.store_id``) beside the position. The bus can outlive the store — a
service moved from SQLite to PostgreSQL, given a new schema or a wiped file keeps its
bus — and a position counted in another log means nothing in this one. So at the
start of each run the relay asks whether the bus's checkpoint counts this store's log
(``Checkpoint.counts``: the same store id, and not past the head). If it does not, the
relay **starts over from the beginning of this store's log**, saves that at once, and
says so (a warning, and ``RelayStatus.foreign_checkpoint``). Starting over republishes
at worst; skipping would lose events without a trace, and the bus's de-duplication by
message id and each consumer's inbox absorb the repeats. A checkpoint saved before
checkpoints kept their store (``store_id`` None) is taken as this store's up to the
head — nothing tells it apart — and bound to it at once; above the head it is proof of
another log, and the relay starts over.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter, deque
from typing import Final

import msgspec

from eventcore.errors import BusClosed, BusError, DecodeError, InvalidInput
from eventcore.instrumentation import Hooks, PublishFinished, PublishStarted, RelayProgress, resolve
from eventcore.lifecycle import Readiness
from eventcore.messaging.bus import Bus, OutgoingMessage, bus_kind
from eventcore.messaging.commands.outbox import ROUTED_TYPES, outgoing_of
from eventcore.messaging.envelope import encode_envelope, envelopes_of
from eventcore.messaging.names import check_name
from eventcore.messaging.topics import TopicMap
from eventcore.retry import RetryPolicy
from eventcore.store.checkpoint import Checkpoint
from eventcore.store.follower import DEFAULT_POLL_INTERVAL, LogFollower
from eventcore.store.protocol import EventStore
from eventcore.types import StoredEvent

__all__ = ["Relay", "RelayStatus"]

_logger = logging.getLogger(__name__)

#: How often, at most, the checkpoint is written while events keep coming. A crash
#: republishes at most this much (the bus and the inbox drop the repeats).
_CHECKPOINT_INTERVAL: Final = 0.25
#: Seconds without a new batch before an idle relay saves its checkpoint.
_IDLE_SAVE_DELAY: Final = 0.05
#: Backoff between attempts to publish a batch the bus refused.
_REPUBLISH = RetryPolicy(max_attempts=1, initial_delay=0.05, max_delay=2.0)


class RelayStatus(msgspec.Struct, frozen=True, kw_only=True):
    """What a relay has done. ``position``: the store position published and
    acknowledged up to; ``lag_events``: log positions past it that it has seen.

    ``store_id``: the store whose log ``position`` and ``checkpoint`` count (None
    until the run has started). ``foreign_checkpoint``: the checkpoint the bus held
    at the start of this run when it did not count this store's log (another store's,
    or past this store's head) and the relay started over instead; None otherwise.
    """

    service: str
    position: int
    checkpoint: int
    head: int
    lag_events: int
    published: int
    skipped: int
    in_flight: int
    republished_batches: int
    last_error: str | None
    store_id: str | None = None
    foreign_checkpoint: Checkpoint | None = None


class _Pending(msgspec.Struct):
    messages: list[OutgoingMessage]
    last_position: int
    publishing: asyncio.Task[None]
    #: The batch's events, for the instrumentation hooks (their trace contexts).
    events: list[StoredEvent]


class Relay:
    """``await relay.run()`` until ``relay.stop()``.

    ``window``: the most messages waiting for the bus's acknowledgement at once;
    ``batch_size``: events read from the log per batch (and published per call).
    """

    def __init__(
        self,
        store: EventStore,
        bus: Bus,
        topics: TopicMap,
        *,
        service: str,
        window: int = 4096,
        batch_size: int = 512,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        hooks: Hooks | None = None,
    ) -> None:
        check_name("service", service)
        if window < 1 or batch_size < 1:
            raise InvalidInput("window and batch_size must be at least 1")
        if not poll_interval > 0:
            raise InvalidInput("poll_interval must be positive")
        self._store = store
        self._bus = bus
        self._topics = topics
        self._service = service
        self._window = window
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._follower: LogFollower | None = None
        self._pending: deque[_Pending] = deque()
        self._in_flight = 0
        self._room = asyncio.Event()
        self._work = asyncio.Event()  # a batch was sent, or stopping
        self._moved = asyncio.Event()  # the position moved, or the run ended
        self._position = 0
        self._checkpoint = 0
        self._store_id: str | None = None
        self._head_at_start = 0
        self._foreign: Checkpoint | None = None
        self._checkpointed_at = 0.0
        self._published = 0
        self._skipped = 0
        self._republished = 0
        self._last_error: str | None = None
        self._stopping = False
        self._readiness = Readiness(f"relay {service!r}")
        self._rng = random.Random()
        self._hooks = resolve(hooks)
        # Named in what the hooks hear; read once, and only when someone listens.
        self._bus_kind = bus_kind(bus) if self._hooks is not None else ""

    @property
    def service(self) -> str:
        return self._service

    @property
    def position(self) -> int:
        """The store position up to which every event is published and acknowledged."""
        return self._position

    def stop(self) -> None:
        """Let ``run`` return after settling what is in flight (and saving the checkpoint)."""
        self._stopping = True
        self._readiness.stopped()
        self._room.set()
        if self._follower is not None:
            self._follower.stop()

    async def ready(self) -> None:
        """Return once ``run`` has loaded the checkpoint and starts publishing from it;
        raise what failed ``run`` before that, or ``WorkerStopped``."""
        await self._readiness.wait()

    def status(self) -> RelayStatus:
        head = self._follower.head if self._follower is not None else self._position
        # The head read when the run started, until the follower has seen as far: right
        # after starting over, lag is the whole log, not 0.
        head = max(head, self._head_at_start)
        return RelayStatus(
            service=self._service,
            position=self._position,
            checkpoint=self._checkpoint,
            head=head,
            lag_events=max(head - self._position, 0),
            published=self._published,
            skipped=self._skipped,
            in_flight=self._in_flight,
            republished_batches=self._republished,
            last_error=self._last_error,
            store_id=self._store_id,
            foreign_checkpoint=self._foreign,
        )

    async def published(self, position: int) -> None:
        """Return once every event up to store ``position`` is published and acknowledged."""
        while self._position < position:
            if self._stopping and not self._pending:
                raise BusError(f"the relay stopped at position {self._position}")
            self._moved.clear()
            await self._moved.wait()

    async def run(self) -> None:
        """Publish until ``stop()``. Raises the store's or bus's error that ended it
        (``StoreClosed``, ``BusClosed``: closed under it); a bus outage is waited out.
        Stopped before it starts, it returns at once."""
        if self._stopping:
            self._moved.set()  # ``published`` callers: nothing more is coming
            return
        try:
            start = await self._starting_position()
        except BaseException as error:
            self._readiness.fail(error)
            raise
        # Wake ``published`` callers already waiting for a position the checkpoint covers.
        self._moved.set()
        follower = LogFollower(
            self._store,
            after=start,
            batch_size=self._batch_size,
            poll_interval=self._poll_interval,
        )
        self._follower = follower
        if self._stopping:
            follower.stop()
        _logger.info(
            "relay %s started at position %d of store %s (head %d)",
            self._service,
            start,
            self._store_id,
            self._head_at_start,
        )
        self._readiness.set()
        try:
            async with asyncio.TaskGroup() as group:
                settling = group.create_task(self._settle_in_order())
                try:
                    async for events in follower.batches():
                        await self._send(events)
                finally:
                    self._stopping = True
                    self._room.set()
                    self._work.set()
                await settling
        except BaseExceptionGroup as failures:
            # Almost always one failure (the store or the bus): raise it as itself, so
            # callers can catch StoreError rather than unpack a group.
            if len(failures.exceptions) == 1:
                raise failures.exceptions[0] from None
            raise
        finally:
            # Publishes never settled (stopped while the bus refused them, or cancelled):
            # the position did not move past them, so the next run sends them again.
            for pending in self._pending:
                pending.publishing.cancel()
            if self._pending:
                await asyncio.wait([pending.publishing for pending in self._pending])
            self._pending.clear()
            self._in_flight = 0
            self._moved.set()
            _logger.info(
                "relay %s stopped at position %d (checkpoint %d, %d published)",
                self._service,
                self._position,
                self._checkpoint,
                self._published,
            )

    async def _starting_position(self) -> int:
        """Where this run starts: the bus's checkpoint if it counts this store's log,
        else 0 (see the module's docstring). Saves the checkpoint at once when it had to
        be bound to this store or set aside."""
        saved = await self._bus.load_checkpoint(self._service)
        store_id = await self._store.store_id()
        head = await self._store.last_position()
        self._store_id, self._head_at_start, self._foreign = store_id, head, None
        start = 0
        if saved is not None and saved.counts(store_id, head):
            start = saved.position
        elif saved is not None:
            self._foreign = saved
            _logger.warning(
                "relay %s: the bus's checkpoint (position %d of store %s) does not count"
                " this store's log (store %s, %d events); publishing from its beginning",
                self._service,
                saved.position,
                saved.store_id or "unknown: saved before checkpoints kept their store",
                store_id,
                head,
            )
        self._position = self._checkpoint = start
        if saved is not None and saved.store_id != store_id:
            # A legacy checkpoint is bound to this store now, and a foreign one replaced,
            # even if nothing is published before the next change of store.
            await self._save_checkpoint()
        return start

    async def _send(self, events: list[StoredEvent]) -> None:
        """Start publishing one batch; wait first while the window is full."""
        messages = self._messages_of(events)
        while self._in_flight > 0 and self._in_flight + len(messages) > self._window:
            if self._stopping:
                # Settling gives up on a batch the bus refuses once stopping, and the
                # room that batch holds never comes free. This one is not sent: the
                # position never passes it, so the next run sends it.
                return
            self._room.clear()
            await self._room.wait()
        self._in_flight += len(messages)
        publishing = asyncio.ensure_future(self._publish(messages, events))
        self._pending.append(_Pending(messages, events[-1].position, publishing, events))
        self._work.set()

    def _messages_of(self, events: list[StoredEvent]) -> list[OutgoingMessage]:
        topic_for = self._topics.topic_for
        if any(event.type in ROUTED_TYPES for event in events):
            return self._messages_with_commands(events)
        routed = [(event, topic) for event in events if (topic := topic_for(event.type))]
        self._skipped += len(events) - len(routed)
        envelopes = envelopes_of((event for event, _ in routed), source=self._service)
        return [
            OutgoingMessage(topic, envelope.id, envelope.subject, encode_envelope(envelope))
            for (_, topic), envelope in zip(routed, envelopes, strict=True)
        ]

    def _messages_with_commands(self, events: list[StoredEvent]) -> list[OutgoingMessage]:
        """A batch holding commands sent over the bus or their replies: those go where
        they say (``eventcore.messaging.commands``), whatever the topic map says, and in
        log order with the rest."""
        messages: list[OutgoingMessage] = []
        for event in events:
            if event.type in ROUTED_TYPES:
                try:
                    messages.append(outgoing_of(event, source=self._service))
                except DecodeError as error:
                    # Only a request or reply written by hand could be unreadable; no
                    # retry would make it readable, and waiting on it would stop the
                    # outbox. It stays in the store, and the log says which it was.
                    self._skipped += 1
                    _logger.error(
                        "relay %s: cannot send the %s at position %d: %s",
                        self._service,
                        event.type,
                        event.position,
                        error,
                    )
                continue
            topic = self._topics.topic_for(event.type)
            if topic is None:
                self._skipped += 1
                continue
            (envelope,) = envelopes_of((event,), source=self._service)
            messages.append(
                OutgoingMessage(topic, envelope.id, envelope.subject, encode_envelope(envelope))
            )
        return messages

    async def _publish(
        self, messages: list[OutgoingMessage], events: list[StoredEvent], attempt: int = 1
    ) -> None:
        if not messages:
            return
        hooks = self._hooks
        if hooks is None:
            await self._bus.publish(messages)
            return
        scope = hooks.publish_started(
            PublishStarted(
                service=self._service,
                events=events,
                topics=tuple(dict.fromkeys(message.topic for message in messages)),
                attempt=attempt,
                bus=self._bus_kind,
            )
        )
        started = time.perf_counter()
        error: BaseException | None = None
        try:
            await self._bus.publish(messages)
        except BaseException as failure:
            error = failure
            raise
        finally:
            hooks.publish_finished(
                PublishFinished(
                    service=self._service,
                    events=len(messages),
                    per_topic=Counter(message.topic for message in messages),
                    error=error,
                    seconds=time.perf_counter() - started,
                ),
                scope,
            )

    async def _settle_in_order(self) -> None:
        """Wait for each batch's acknowledgement in log order; republish refused ones;
        move the position and (every so often, and when idle) the checkpoint."""
        while True:
            if not self._pending:
                # Cleared before the checkpoint's await, not after: a batch sent while the
                # checkpoint is saved sets it again instead of being slept through.
                self._work.clear()
                if self._position > self._checkpoint and not self._stopping:
                    # Idle only if no batch follows soon: events appended one at a time
                    # leave the relay "idle" after each, and a save each time would add a
                    # bus write per event (the interval save above covers a steady flow).
                    await self._work_within(_IDLE_SAVE_DELAY)
                    if self._work.is_set():
                        continue
                if self._position > self._checkpoint:
                    await self._save_checkpoint()
                if self._stopping:
                    return
                await self._work.wait()
                continue
            head = self._pending[0]
            try:
                await self._until_acknowledged(head)
            except _Abandoned:
                if self._position > self._checkpoint:
                    await self._save_checkpoint()
                return
            self._pending.popleft()
            self._in_flight -= len(head.messages)
            self._published += len(head.messages)
            self._position = head.last_position
            self._room.set()
            self._moved.set()
            if self._hooks is not None:
                status = self.status()
                self._hooks.relay_progress(
                    RelayProgress(
                        service=self._service,
                        published=len(head.messages),
                        position=status.position,
                        lag_events=status.lag_events,
                    )
                )
            if time.monotonic() - self._checkpointed_at >= _CHECKPOINT_INTERVAL:
                await self._save_checkpoint()

    async def _work_within(self, seconds: float) -> None:
        try:
            async with asyncio.timeout(seconds):
                await self._work.wait()
        except TimeoutError:
            pass

    async def _until_acknowledged(self, pending: _Pending) -> None:
        attempt = 0
        publishing = pending.publishing
        while True:
            try:
                await publishing
            except BusClosed:
                raise
            except BusError as error:
                attempt += 1
                self._last_error = f"{type(error).__name__}: {error}"
                if self._stopping:
                    raise _Abandoned from error
                if attempt == 1:
                    self._republished += 1
                    _logger.warning(
                        "relay %s: the bus refused the batch up to position %d (%s);"
                        " publishing it again until it is taken",
                        self._service,
                        pending.last_position,
                        self._last_error,
                    )
                await asyncio.sleep(_REPUBLISH.delay(min(attempt, 16), self._rng))
                publishing = asyncio.ensure_future(
                    self._publish(pending.messages, pending.events, attempt + 1)
                )
                continue
            if attempt:
                self._last_error = None
                _logger.info(
                    "relay %s: the bus took the batch up to position %d after %d refusals",
                    self._service,
                    pending.last_position,
                    attempt,
                )
            return

    async def _save_checkpoint(self) -> None:
        position = self._position
        checkpoint = Checkpoint(position=position, store_id=self._store_id)
        attempt = 0
        while True:
            try:
                await self._bus.save_checkpoint(self._service, checkpoint)
                break
            except BusClosed:
                raise
            except BusError as error:
                # The position is still right in memory; only a crash now would make
                # the next run republish from the older checkpoint.
                attempt += 1
                self._last_error = f"saving the checkpoint: {type(error).__name__}: {error}"
                if self._stopping and attempt >= 3:
                    return
                await asyncio.sleep(_REPUBLISH.delay(min(attempt, 16), self._rng))
        if attempt:
            # Settling is one loop: any publish error before this save was cleared when
            # its batch went through, so the error shown is this save's, and it is over.
            self._last_error = None
        self._checkpoint = position
        self._checkpointed_at = time.monotonic()


class _Abandoned(Exception):
    """Stopping while the bus refuses a batch: leave it for the next run."""
