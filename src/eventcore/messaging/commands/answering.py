"""A command received over the bus, run so that its reply is part of its own append.

``answering(command, request, ...)`` wraps the received command in a command of its own
that the ordinary executor runs. The wrapper reads the command's streams and one more,
the **inbox stream** of the request's (sender, idempotency key)
(``records.inbox_stream``), which holds every reply given under that key. Its decision,
pure like any ``handle``:

- this request (its correlation id) was answered already → write nothing: a repeated
  delivery is answered once;
- the key succeeded already, under another correlation id (a retry after a timeout) →
  write only a reply that repeats the first result: the command does not run twice;
- else run the command: its events **plus** a ``CommandReplied(succeeded)`` in one
  append; or, when it refuses (``CommandRejected``), only a ``CommandReplied(refused)``.

Every append carries the inbox stream's version as read, so two deliveries of one key
racing conflict there and the loser, reading again, takes one of the first two
branches. That is the inbox: once in effect per key, one reply per request, no reply
without its events and no events without their reply — one append holds both.

A refusal is answered per request, not per key. A saga retries a compensation under the
same key with a new correlation id; had the refusal been stored as *the* answer to the
key, every retry would be refused from the store forever. Here each retry runs the
command again, on the state as it is now, until one succeeds — and from then on the key
answers with that success.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, ClassVar

import msgspec

from eventcore.command import Command, Writes, declared_streams
from eventcore.errors import CommandRejected, InvalidCommand
from eventcore.events import Event
from eventcore.messaging.commands.records import CommandReplied, inbox_stream, to_json
from eventcore.types import StreamId

__all__ = ["AnswerState", "Answering", "Request", "ResultOf", "answering"]

#: Turns what a command wrote into its reply's result (JSON-encodable); None by default.
ResultOf = Callable[[Any, tuple[Event, ...]], object]


class Request(msgspec.Struct, frozen=True, kw_only=True):
    """Who asked, under which key, and where the answer goes."""

    service: str
    sender: str
    command_type: str
    idempotency_key: str
    correlation_id: str
    reply_to: str


class AnswerState(msgspec.Struct, frozen=True):
    """The command's own state, and the replies its key has been given."""

    inner: Any
    replies: tuple[CommandReplied, ...] = ()


class Answering(Command[AnswerState]):
    """The received command and its reply as one command (see the module's docs).

    Built by ``answering``, which names a subclass after the command, so the executor's
    hooks and metrics see the command's own name."""

    streams: tuple[StreamId, ...]
    command: Any
    request: Request
    result_of: Any = None

    #: The command whose type this subclass answers for.
    answers: ClassVar[type[Any]] = object

    @property
    def inbox(self) -> StreamId:
        return self.streams[-1]

    def initial_state(self) -> AnswerState:
        return AnswerState(self.command.initial_state())

    def apply(self, state: AnswerState, stream_id: StreamId, event: Event) -> AnswerState:
        if stream_id == self.inbox:
            if isinstance(event, CommandReplied):
                return AnswerState(state.inner, (*state.replies, event))
            return state
        return AnswerState(self.command.apply(state.inner, stream_id, event), state.replies)

    def discover(self, state: AnswerState) -> Iterable[StreamId]:
        discovered: Iterable[StreamId] = self.command.discover(state.inner)
        return discovered

    def handle(self, state: AnswerState) -> Writes:
        request = self.request
        if any(reply.correlation_id == request.correlation_id for reply in state.replies):
            return {}
        first = next((reply for reply in state.replies if reply.succeeded), None)
        if first is not None:
            return {self.inbox: [self._reply(True, result=first.result, first=first)]}
        try:
            writes = self.command.handle(state.inner)
        except CommandRejected as refusal:
            return {self.inbox: [self._reply(False, reason=str(refusal) or type(refusal).__name__)]}
        if not isinstance(writes, Mapping):
            # Left to the executor's own check, which names the command.
            return writes  # type: ignore[no-any-return]
        if self.inbox in writes:
            raise InvalidCommand(
                f"{type(self.command).__name__}.handle() wrote to its inbox stream {self.inbox!r}"
            )
        events = tuple(_events_of(writes.values()))
        result = None if self.result_of is None else self.result_of(self.command, events)
        answered = dict(writes)
        answered[self.inbox] = [self._reply(True, result=msgspec.Raw(to_json(result)))]
        return answered

    def _reply(
        self,
        succeeded: bool,
        *,
        result: msgspec.Raw | None = None,
        reason: str = "",
        first: CommandReplied | None = None,
    ) -> CommandReplied:
        request = self.request
        return CommandReplied(
            service=request.service,
            sender=request.sender,
            command_type=request.command_type,
            idempotency_key=request.idempotency_key,
            correlation_id=request.correlation_id,
            reply_to=request.reply_to,
            succeeded=succeeded,
            result=result if result is not None else msgspec.Raw(b"null"),
            reason=reason,
            first_correlation_id=first.correlation_id if first is not None else None,
        )


def _events_of(lists: Iterable[Sequence[Event]]) -> Iterable[Event]:
    for events in lists:
        yield from events


_subclasses: dict[type[Any], type[Answering]] = {}


def answering(command: Command[Any], request: Request, result_of: ResultOf | None) -> Answering:
    """``command`` wrapped to answer ``request`` in its own append."""
    kind = type(command)
    cls = _subclasses.get(kind)
    if cls is None:
        # Named after the command, for the executor's hooks (spans, metrics by command);
        # a command that usually creates its streams lets the wrapper guess them empty
        # too (the inbox of a fresh key is).
        cls = _subclasses[kind] = type(
            kind.__name__,
            (Answering,),
            {"answers": kind, "creates_streams": kind.creates_streams, "__module__": __name__},
        )
    streams = (*declared_streams(command), inbox_stream(request.sender, request.idempotency_key))
    return cls(streams=streams, command=command, request=request, result_of=result_of)
