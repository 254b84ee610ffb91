"""``AcceptedCommands``: the command types a service accepts over the bus, by type name.

It is what the command receiver's subscriber reads payloads with, in place of an
``EventRegistry``: a message of a type not accepted is ``UnknownCommandType``, a
payload that does not fit its class is a ``DecodeError`` — each parked as a dead letter
at once with that reason, since no retry would change it.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

from eventcore.command import Command
from eventcore.errors import DecodeError, InvalidInput, UnknownCommandType
from eventcore.messaging.commands.answering import ResultOf
from eventcore.messaging.commands.records import command_type_of
from eventcore.types import StreamId

__all__ = ["AcceptedCommands"]

#: Commands carry no schema versions of their own yet: every message says 1.
COMMAND_SCHEMA_VERSION: Final = 1


def _decode_value(kind: type[Any], value: Any) -> Any:
    # A field typed StreamId is validated on the way in, as in an event.
    if kind is StreamId and isinstance(value, str):
        return StreamId(value)
    raise NotImplementedError(f"cannot decode {type(value).__name__} as {kind}")


class AcceptedCommands:
    """Command classes by their type name (``command_type_of``), each with how its
    reply's result is made from what it wrote."""

    def __init__(self) -> None:
        self._types: dict[str, type[Command[Any]]] = {}
        self._decoders: dict[str, msgspec.json.Decoder[Any]] = {}
        self._results: dict[str, ResultOf | None] = {}

    def add(self, command: type[Command[Any]], result: ResultOf | None = None) -> str:
        """Accept ``command``; returns its type name."""
        if not (isinstance(command, type) and issubclass(command, Command)):
            raise InvalidInput(f"{command!r} is not a Command class")
        if result is not None and not callable(result):
            raise InvalidInput(f"the result of {command.__name__} must be callable")
        name = command_type_of(command)
        if name in self._types:
            raise InvalidInput(f"command type {name!r} is accepted already")
        self._types[name] = command
        self._decoders[name] = msgspec.json.Decoder(command, dec_hook=_decode_value)
        self._results[name] = result
        return name

    def __contains__(self, name: object) -> bool:
        return name in self._types

    def __iter__(self) -> Any:
        return iter(self._types)

    def __len__(self) -> int:
        return len(self._types)

    def type_of(self, name: str) -> type[Command[Any]]:
        try:
            return self._types[name]
        except KeyError:
            raise UnknownCommandType(name) from None

    def result_of(self, name: str) -> ResultOf | None:
        return self._results.get(name)

    def decode_payload(self, name: str, schema_version: int, data: bytes) -> Any:
        decoder = self._decoders.get(name)
        if decoder is None:
            raise UnknownCommandType(name)
        if schema_version != COMMAND_SCHEMA_VERSION:
            raise DecodeError(
                f"command {name!r} at schema version {schema_version}; "
                f"this service reads version {COMMAND_SCHEMA_VERSION}"
            )
        try:
            return decoder.decode(data)
        except msgspec.ValidationError as error:
            raise DecodeError(
                f"payload of command {name!r} does not match its class: {error}"
            ) from None
        except msgspec.DecodeError as error:
            raise DecodeError(f"payload of command {name!r} is not valid JSON: {error}") from None
        except Exception as error:
            # A StreamId field given an invalid stream id raises from the hook.
            raise DecodeError(f"payload of command {name!r} is not valid: {error}") from None
