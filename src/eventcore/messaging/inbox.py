"""What a subscriber's handler gets, and the inbox that makes handling idempotent.

Delivery is at least once, so a handler may see a message again: after a crash before
the ack, after a dead letter is retried, or when a relay republishes an event past the
bus's dedupe window (a new message id around the same envelope). The inbox is the
store's idempotency key: ``Received.run`` executes a command with the key
``"{group}:{event id}"``, which commits in the same transaction as the command's
events, so a second run of the same event by the same group writes nothing and
returns the first run's result.

``Received`` is generic in its event: a handler that declares ``received:
Received[UserRegistered]`` gets ``received.event`` typed as a ``UserRegistered``, and a
subscriber can read the event type it handles from that annotation
(``event_type_of``).
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Awaitable, Callable
from typing import Any, Generic, Protocol, TypeVar

import msgspec

from eventcore.command import Command
from eventcore.errors import InvalidInput
from eventcore.events import Event
from eventcore.executor import Executor
from eventcore.messaging.bus import DeadLetter, Delivery
from eventcore.messaging.envelope import DistributedEvent
from eventcore.pipeline import CommandResult
from eventcore.types import Metadata

__all__ = ["Handler", "PayloadTypes", "Received", "event_type_of"]

#: The event class a ``Received`` carries (covariant: a ``Received[UserRegistered]`` is
#: a ``Received[Event]``).
E = TypeVar("E", bound=Event, covariant=True)


class Received(msgspec.Struct, Generic[E], frozen=True, kw_only=True):
    """One event as a subscriber's handler sees it: ``event`` is an ``E``.

    ``letter`` is the dead letter being run again after ``eventcore dlq retry``, else
    None; such a run's ``delivery`` is rebuilt from the letter (``partition`` -1,
    ``sequence`` 0, ``published_at`` the time it failed), as it comes from no partition.
    """

    envelope: DistributedEvent
    event: E
    delivery: Delivery
    group: str
    letter: DeadLetter | None = None

    @property
    def idempotency_key(self) -> str:
        """The inbox key: one per (consumer group, event), whatever message carried it."""
        return f"{self.group}:{self.envelope.id}"

    @property
    def metadata(self) -> Metadata:
        """Metadata for what this event causes: same correlation, caused by this event."""
        envelope = self.envelope
        return Metadata(
            correlation_id=envelope.correlationid or envelope.id,
            causation_id=envelope.id,
            traceparent=envelope.traceparent,
            tracestate=envelope.tracestate,
        )

    async def run(
        self, executor: Executor, command: Command[Any], *, step: str | None = None, **kwargs: Any
    ) -> CommandResult:
        """Execute ``command`` once per event and group: a repeat returns the first result
        (``deduplicated``) and writes nothing. ``kwargs`` go to ``Executor.execute``.

        A handler that runs more than one command for an event names each with its own
        ``step`` (``"open-wallet"``, ``"send-welcome"``): each step is then done once.
        Without it, a second command would share the first one's key and be taken for a
        repeat."""
        key = self.idempotency_key
        if step is not None:
            if not isinstance(step, str) or not step:
                raise InvalidInput("step must be a non-empty string")
            key = f"{key}:{step}"
        return await executor.execute(
            command, idempotency_key=key, metadata=self.metadata, **kwargs
        )


class PayloadTypes(Protocol):
    """What a subscriber reads payloads with: an ``EventRegistry``, or the command types
    a service accepts over the bus (``eventcore.messaging.commands``)."""

    def __contains__(self, name: object) -> bool: ...

    def type_of(self, name: str) -> type[Any]:
        """The class of ``name``; for a name it does not know, its own ``DecodeError``
        saying so (``UnknownEventType``, ``UnknownCommandType``)."""
        ...

    def decode_payload(self, name: str, schema_version: int, data: bytes) -> Any:
        """The payload as an instance of its class; ``DecodeError`` when it is not one."""
        ...


#: A handler: called with each received event of its type; raising means "not handled".
Handler = Callable[[Received[Any]], Awaitable[object]]


def event_type_of(handler: Handler) -> type[Event]:
    """The event class ``handler`` is for, read from the annotation of its first
    parameter: ``async def on_user_registered(received: Received[UserRegistered])``.

    Raises ``InvalidInput`` naming the handler when the annotation says no event class
    (missing, bare ``Received``, or a name that cannot be resolved where the handler
    was defined); such a handler is given in a dict, ``{UserRegistered: handler}``.
    """
    name = getattr(handler, "__qualname__", None) or repr(handler)
    if not callable(handler):
        raise InvalidInput(f"a handler must be callable, got {handler!r}")
    try:
        parameters = list(inspect.signature(handler).parameters.values())
        annotated = handler if inspect.isroutine(handler) else type(handler).__call__
        hints = typing.get_type_hints(annotated)
    except (NameError, TypeError, ValueError) as error:
        raise InvalidInput(
            f"cannot read the event type of handler {name} from its annotations ({error}); "
            "give it in a dict instead: {EventClass: handler}"
        ) from None
    annotation = hints.get(parameters[0].name) if parameters else None
    if typing.get_origin(annotation) is Received:
        (event_type,) = typing.get_args(annotation)
        if isinstance(event_type, type) and issubclass(event_type, Event):
            return event_type
    raise InvalidInput(
        f"handler {name} does not say which event it handles: annotate its first "
        "parameter as Received[EventClass], or give it in a dict {EventClass: handler}"
    )
