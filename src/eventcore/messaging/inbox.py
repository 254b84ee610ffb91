"""What a subscriber's handler gets, and the inbox that makes handling idempotent.

Delivery is at least once, so a handler may see a message again: after a crash before
the ack, after a dead letter is retried, or when a relay republishes an event past the
bus's dedupe window (a new message id around the same envelope). The inbox is the
store's idempotency key: ``Received.run`` executes a command with the key
``"{group}:{event id}"``, which commits in the same transaction as the command's
events, so a second run of the same event by the same group writes nothing and
returns the first run's result.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from eventcore.command import Command
from eventcore.errors import InvalidInput
from eventcore.events import Event
from eventcore.executor import Executor
from eventcore.messaging.bus import DeadLetter, Delivery
from eventcore.messaging.envelope import DistributedEvent
from eventcore.pipeline import CommandResult
from eventcore.types import Metadata

__all__ = ["Handler", "Received"]


class Received(msgspec.Struct, frozen=True, kw_only=True):
    """One event as a subscriber's handler sees it.

    ``letter`` is the dead letter being run again after ``eventcore dlq retry``, else
    None; such a run's ``delivery`` is rebuilt from the letter (``partition`` -1,
    ``sequence`` 0, ``published_at`` the time it failed), as it comes from no partition.
    """

    envelope: DistributedEvent
    event: Event
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


#: A handler: called with each received event of its type; raising means "not handled".
Handler = Callable[[Received], Awaitable[object]]
