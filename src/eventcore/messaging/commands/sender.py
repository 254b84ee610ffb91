"""``CommandSender``: ``await sender.send(service, command, deadline=...)`` for a service
that is not a saga.

It takes the path a saga's requests take: the request is stored
(``CommandRequested``, in a stream of its own in the sender's store), the service's
relay publishes it, the receiver answers through its own store and relay, and the
reply comes back on the sender's reply topic, where this worker's subscriber hands it
to the ``send`` waiting for its correlation id. The relay of the sending service must
run (the request leaves through it, as everything does).

A reply nobody waits for — it came after its ``send`` gave up, or it answers another
process's request — is ignored and counted (``status().unknown_replies``), with the
reason in the log. Several processes of one service that all ``send`` must each read
every reply: give each its own ``group`` (each then ignores the others' replies).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any, TypeVar, overload

import msgspec

from eventcore.errors import InvalidInput, ReplyTimeout
from eventcore.events import EventRegistry
from eventcore.instrumentation import Hooks
from eventcore.messaging.bus import DEFAULT_ACK_WAIT, Bus
from eventcore.messaging.commands._subscribed import SubscribedWorker
from eventcore.messaging.commands.records import (
    COMMAND_EVENTS,
    CommandReplied,
    check_key,
    command_type_of,
    reply_topic,
    request_for,
)
from eventcore.messaging.commands.replies import Rejected, Succeeded, reply_of
from eventcore.messaging.inbox import Received
from eventcore.messaging.names import check_name
from eventcore.messaging.subscriber import Subscriber, SubscriberStatus
from eventcore.store.protocol import EventStore
from eventcore.types import Metadata, StreamId

__all__ = ["CommandSender", "SenderStatus"]

_logger = logging.getLogger(__name__)

R = TypeVar("R")


class SenderStatus(msgspec.Struct, frozen=True, kw_only=True):
    """``sent`` requests, ``answered`` of them, ``timed_out``, those ``waiting`` now,
    and replies that came for no request waiting here (``unknown_replies``)."""

    service: str
    reply_to: str
    sent: int
    answered: int
    timed_out: int
    waiting: int
    unknown_replies: int
    subscriber: SubscriberStatus


class CommandSender(SubscribedWorker):
    """Sends commands from ``service`` and awaits their replies; see the module's docs.

    ``registry`` is the registry of ``store``: the request events are registered with
    it. ``reply_to`` is the topic replies come back on (``<service>-replies`` unless
    given); ``group`` the consumer group reading it (``<service>-send``)."""

    def __init__(
        self,
        store: EventStore,
        bus: Bus,
        registry: EventRegistry,
        *,
        service: str,
        reply_to: str | None = None,
        group: str | None = None,
        member: str | None = None,
        ack_wait: float = DEFAULT_ACK_WAIT,
        hooks: Hooks | None = None,
    ) -> None:
        self._service = check_name("service", service)
        self._reply_to = check_name("reply topic", reply_to or reply_topic(service))
        for event_type in COMMAND_EVENTS:
            registry.register(event_type)
        self._store = store
        self._registry = registry
        self._waiting: dict[str, asyncio.Future[CommandReplied]] = {}
        self._subscriber = Subscriber(
            bus,
            self._reply_to,
            {CommandReplied: self._on_reply},
            group=group or check_name("group", f"{service}-send"),
            registry=EventRegistry(COMMAND_EVENTS),
            member=member,
            ack_wait=ack_wait,
            hooks=hooks,
        )
        self._sent = self._answered = self._timed_out = self._unknown = 0

    @property
    def reply_to(self) -> str:
        return self._reply_to

    def status(self) -> SenderStatus:
        return SenderStatus(
            service=self._service,
            reply_to=self._reply_to,
            sent=self._sent,
            answered=self._answered,
            timed_out=self._timed_out,
            waiting=len(self._waiting),
            unknown_replies=self._unknown,
            subscriber=self._subscriber.status(),
        )

    @overload
    async def send(
        self,
        service: str,
        command: object,
        *,
        deadline: float,
        result: type[R],
        idempotency_key: str | None = None,
        metadata: Metadata | None = None,
    ) -> Succeeded[R] | Rejected: ...

    @overload
    async def send(
        self,
        service: str,
        command: object,
        *,
        deadline: float,
        idempotency_key: str | None = None,
        metadata: Metadata | None = None,
    ) -> Succeeded[Any] | Rejected: ...

    async def send(
        self,
        service: str,
        command: object,
        *,
        deadline: float,
        result: Any = Any,
        idempotency_key: str | None = None,
        metadata: Metadata | None = None,
    ) -> Succeeded[Any] | Rejected:
        """Send ``command`` to ``service`` and return its reply: ``Succeeded`` with the
        result as a ``result`` (JSON builtins unless given), or ``Rejected`` with the
        reason.

        ``deadline``: seconds to wait, storing the request included; then
        ``ReplyTimeout``. The command may still run after that: send it again with the
        same ``idempotency_key`` (one is made up when none is given; the error names
        it) and it runs no second time — the reply repeats the first run's result.
        """
        if isinstance(deadline, bool) or not isinstance(deadline, int | float) or not deadline > 0:
            raise InvalidInput(f"deadline must be a positive number of seconds, got {deadline!r}")
        key = check_key("idempotency key", idempotency_key or str(uuid.uuid4()))
        correlation = str(uuid.uuid4())
        request = request_for(
            service,
            command,
            idempotency_key=key,
            correlation_id=correlation,
            reply_to=self._reply_to,
        )
        stream = StreamId(f"command-sent:{correlation}")
        event = self._registry.encode(
            request, metadata=metadata or Metadata(correlation_id=correlation)
        )
        # Waiting before the request is stored: its reply cannot come before that.
        future: asyncio.Future[CommandReplied] = asyncio.get_running_loop().create_future()
        self._waiting[correlation] = future
        timeout = asyncio.timeout(deadline)
        try:
            async with timeout:
                await self._store.append({stream: [event]}, expected={stream: 0})
                self._sent += 1
                replied = await future
        except TimeoutError as error:
            if not timeout.expired():
                raise
            self._timed_out += 1
            raise ReplyTimeout(service, command_type_of(type(command)), key, deadline) from error
        finally:
            self._waiting.pop(correlation, None)
        self._answered += 1
        return reply_of(replied, result)

    async def _on_reply(self, received: Received[CommandReplied]) -> None:
        replied = received.event
        future = self._waiting.get(replied.correlation_id)
        if future is None or future.done():
            self._unknown += 1
            _logger.info(
                "command sender %s: ignored a reply from %s to %s (request %s): no send "
                "here waits for it (it came after its deadline, or answers another process)",
                self._service,
                replied.service,
                replied.command_type,
                replied.correlation_id,
            )
            return
        future.set_result(replied)
