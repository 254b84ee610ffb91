"""``CommandReceiver``: a service accepting commands from others on its command topic.

It is a ``Subscriber`` of ``<service>-commands`` in the consumer group ``<service>``,
with one handler for every command type it accepts. Each message runs its command
through the service's executor wrapped by ``answering``: the command's events and its
reply commit in one append, and the reply leaves through the service's relay to the
topic the request named. So a reply is sent exactly when the command committed, and a
command delivered any number of times runs once and is answered once per request.

What it refuses, parked as a dead letter at once with the reason (no retry would
change it), the rest of the topic carrying on:

- a type it does not accept (``UnknownCommandType``);
- a payload that does not fit the command's class (``DecodeError``);
- a message that is no command message: no reply topic, request id or idempotency key,
  or a sender name that cannot name a service (``InvalidCommand``).

A command that raises anything but ``CommandRejected`` gets no reply: it is retried and
then parked, as a subscriber's handler would be, and the sender's deadline (a saga
step's timeout) says what becomes of it. The relay of the service must run for replies
to leave.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from eventcore.command import Command
from eventcore.errors import InvalidCommand, InvalidInput, InvalidMessage
from eventcore.executor import Executor
from eventcore.instrumentation import Hooks
from eventcore.messaging.bus import DEFAULT_ACK_WAIT, Bus
from eventcore.messaging.commands._subscribed import SubscribedWorker
from eventcore.messaging.commands.accepted import AcceptedCommands
from eventcore.messaging.commands.answering import Request, ResultOf, answering
from eventcore.messaging.commands.outbox import decode_command_envelope
from eventcore.messaging.commands.records import CommandReplied, command_topic
from eventcore.messaging.inbox import Received
from eventcore.messaging.names import check_name
from eventcore.messaging.subscriber import Subscriber, SubscriberStatus
from eventcore.pipeline import CommandResult

__all__ = ["CommandReceiver", "ReceiverStatus"]

_logger = logging.getLogger(__name__)


class ReceiverStatus(msgspec.Struct, frozen=True, kw_only=True):
    """What a receiver has done: requests ``answered`` by running their command (of
    them ``refused``), ``repeated`` (answered from an earlier success of the same key),
    ``duplicates`` (deliveries of a request already answered: nothing written), and its
    subscriber's status (dead letters, errors)."""

    service: str
    answered: int
    refused: int
    repeated: int
    duplicates: int
    subscriber: SubscriberStatus


class CommandReceiver(SubscribedWorker):
    """Runs the commands other services send to ``service``; see the module's docs.

    ``commands``: the command classes accepted, or a mapping of each to the function
    that makes its reply's result from the command and the events it wrote
    (``lambda command, events: {"reservation_id": ...}``; without one the result is
    None). ``executor`` is the service's own: the events, the inbox and the replies go
    to its store. The other options are the ``Subscriber``'s.
    """

    def __init__(
        self,
        bus: Bus,
        executor: Executor,
        commands: Sequence[type[Command[Any]]] | Mapping[type[Command[Any]], ResultOf | None],
        *,
        service: str,
        group: str | None = None,
        member: str | None = None,
        max_deliveries: int = 5,
        retry_backoff: tuple[float, float] = (0.05, 2.0),
        ack_wait: float = DEFAULT_ACK_WAIT,
        retry_poll: float = 2.0,
        hooks: Hooks | None = None,
    ) -> None:
        self._service = check_name("service", service)
        accepted = AcceptedCommands()
        pairs = (
            list(commands.items())
            if isinstance(commands, Mapping)
            else [(command, None) for command in commands]
        )
        for command, result in pairs:
            accepted.add(command, result)
        if not len(accepted):
            raise InvalidInput("a command receiver needs at least one command class")
        self._accepted = accepted
        self._executor = executor
        # The replies are events of the service's store: its registry must know them.
        executor.registry.register(CommandReplied)
        self._subscriber = Subscriber(
            bus,
            command_topic(service),
            dict.fromkeys(accepted, self._on_command),
            group=group or service,
            registry=accepted,
            member=member,
            max_deliveries=max_deliveries,
            retry_backoff=retry_backoff,
            ack_wait=ack_wait,
            retry_poll=retry_poll,
            hooks=hooks,
        )
        self._answered = self._refused = self._repeated = self._duplicates = 0

    @property
    def topic(self) -> str:
        return self._subscriber.topic

    def status(self) -> ReceiverStatus:
        return ReceiverStatus(
            service=self._service,
            answered=self._answered,
            refused=self._refused,
            repeated=self._repeated,
            duplicates=self._duplicates,
            subscriber=self._subscriber.status(),
        )

    async def _on_command(self, received: Received[Any]) -> CommandResult:
        try:
            message = decode_command_envelope(received.delivery.body)
            sender = check_name("sender service", message.source)
        except (InvalidMessage, InvalidInput) as error:
            # Raised as bad input, so the subscriber parks it at once.
            raise InvalidCommand(
                f"not a command message this service can answer: {error}"
            ) from None
        request = Request(
            service=self._service,
            sender=sender,
            command_type=message.type,
            idempotency_key=message.idempotencykey,
            correlation_id=message.requestid,
            reply_to=message.replyto,
        )
        command = answering(received.event, request, self._accepted.result_of(message.type))
        result = await self._executor.execute(
            command,
            # Per request: a repeated delivery finds this run's append; the inbox
            # stream (read by every run) is what makes the key run once.
            idempotency_key=f"command:{self._service}:{sender}:{request.correlation_id}",
            metadata=received.metadata,
        )
        self._count(result, request)
        return result

    def _count(self, result: CommandResult, request: Request) -> None:
        reply = result.events[-1] if result.events else None
        if not isinstance(reply, CommandReplied):
            self._duplicates += 1
            _logger.debug(
                "command receiver %s: %s %s already answered; nothing written",
                self._service,
                request.command_type,
                request.correlation_id,
            )
        elif reply.first_correlation_id is not None:
            self._repeated += 1
        else:
            self._answered += 1
            if not reply.succeeded:
                self._refused += 1
