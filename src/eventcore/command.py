"""Commands: decisions over one or more streams, made atomically.

A command is a frozen msgspec Struct. Every field annotated ``StreamId`` (or a tuple,
list or frozenset of them) names a stream the command reads; the executor reads them
all, folds their events into one state with ``apply``, asks ``handle`` for the writes,
and appends with the version it read of *every* stream, so a decision based on a
stream that has since moved is retried rather than committed.

``discover`` lets a command name more streams once it has seen some state (say, the
items of an order); the executor reads those too, bounded by a cap.
"""

from __future__ import annotations

import typing
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar, cast

import msgspec

from eventcore.errors import InvalidCommand
from eventcore.events import Event
from eventcore.types import StreamId

__all__ = ["Command", "Writes", "declared_streams"]

S = TypeVar("S")

#: What ``handle`` returns: the events to append, by stream.
Writes = Mapping[StreamId, Sequence[Event]]


class _CommandBase(Generic[S]):
    """What every command defines; ``S`` is the type of the state folded from its streams."""

    __slots__ = ()

    #: Set to True on a command that usually creates its streams (registering a user,
    #: placing an order under a fresh id): the executor first decides on empty streams
    #: without reading them, and reads only if the append finds they exist after all.
    creates_streams: ClassVar[bool] = False

    def initial_state(self) -> S:
        """The state before any event is applied."""
        raise NotImplementedError(f"{type(self).__name__} must define initial_state()")

    def apply(self, state: S, stream_id: StreamId, event: Event) -> S:
        """Fold one event (read from ``stream_id``) into the state. Events come in log order."""
        raise NotImplementedError(f"{type(self).__name__} must define apply()")

    def handle(self, state: S) -> Writes:
        """Decide: return the events to write, or raise ``CommandRejected``. Must be pure."""
        raise NotImplementedError(f"{type(self).__name__} must define handle()")

    def discover(self, state: S) -> Iterable[StreamId]:
        """More streams to read, given the state so far. None by default."""
        return ()


if TYPE_CHECKING:
    from typing import dataclass_transform

    # As for events (see ``eventcore.events``): type checkers are told that every
    # command class is frozen and keyword-only, as the msgspec runtime class makes it.
    @dataclass_transform(
        frozen_default=True, kw_only_default=True, field_specifiers=(msgspec.field,)
    )
    class Command(_CommandBase[S]):
        """Base class of commands. ``S`` is the type of the state folded from the streams."""

        __slots__ = ()

else:

    class Command(msgspec.Struct, _CommandBase[S], frozen=True, kw_only=True):
        """Base class of commands. ``S`` is the type of the state folded from the streams."""


_stream_fields: dict[type[Any], tuple[tuple[str, bool], ...]] = {}


def _stream_field_kinds(cls: type[Command[Any]]) -> tuple[tuple[str, bool], ...]:
    """(field name, holds many streams) for each stream field of a command class."""
    kinds = _stream_fields.get(cls)
    if kinds is None:
        found: list[tuple[str, bool]] = []
        for field in msgspec.structs.fields(cast(type[msgspec.Struct], cls)):
            annotation = field.type
            if annotation is StreamId:
                found.append((field.name, False))
                continue
            origin = typing.get_origin(annotation)
            args = typing.get_args(annotation)
            if origin in (tuple, list, frozenset, set) and args and args[0] is StreamId:
                found.append((field.name, True))
        kinds = _stream_fields[cls] = tuple(found)
    return kinds


def declared_streams(command: Command[Any]) -> list[StreamId]:
    """The streams a command names in its fields, in field order, without repeats."""
    if not isinstance(command, Command):
        raise InvalidCommand(f"{command!r} is not a Command")
    streams: dict[StreamId, None] = {}
    for name, many in _stream_field_kinds(type(command)):
        value = getattr(command, name)
        values = value if many else (value,)
        for item in values:
            streams[StreamId(item)] = None
    return list(streams)
