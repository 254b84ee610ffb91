"""The answer to a command sent over the bus, typed: ``Succeeded`` or ``Rejected``.

A received ``CommandReplied`` becomes one with ``reply_of(replied, result_type)``: the
result converted to the type the sender expects (a Struct, say). A saga worker reading
the same reply topic feeds ``replied.correlation_id``, ``succeeded``,
``result_value()`` and ``reason`` to its core instead.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar, overload

import msgspec

from eventcore.errors import DecodeError
from eventcore.messaging.commands.records import CommandReplied

__all__ = ["CommandReply", "Rejected", "Succeeded", "reply_of"]

R = TypeVar("R")


class Succeeded(msgspec.Struct, Generic[R], frozen=True, kw_only=True):
    """The command ran (or had run, under the same key) and returned ``result``.

    ``repeated``: the key had succeeded before, under another request; the command did
    not run again and ``result`` is the first run's."""

    service: str
    correlation_id: str
    result: R
    repeated: bool = False

    @property
    def succeeded(self) -> bool:
        return True


class Rejected(msgspec.Struct, frozen=True, kw_only=True):
    """The receiver refused the command (a business rule said no) for ``reason``;
    nothing of it was written but the refusal."""

    service: str
    correlation_id: str
    reason: str

    @property
    def succeeded(self) -> bool:
        return False


#: What ``send`` returns.
CommandReply = Succeeded[R] | Rejected


@overload
def reply_of(replied: CommandReplied, result: type[R]) -> Succeeded[R] | Rejected: ...


@overload
def reply_of(replied: CommandReplied) -> Succeeded[Any] | Rejected: ...


def reply_of(replied: CommandReplied, result: Any = Any) -> Succeeded[Any] | Rejected:
    """The typed answer of a stored or received reply; ``DecodeError`` when its result
    is not a ``result``."""
    if not replied.succeeded:
        return Rejected(
            service=replied.service, correlation_id=replied.correlation_id, reason=replied.reason
        )
    try:
        value = msgspec.json.decode(replied.result, type=result)
    except (msgspec.ValidationError, msgspec.DecodeError) as error:
        raise DecodeError(
            f"the result of {replied.command_type} from {replied.service!r} is not a "
            f"{getattr(result, '__name__', result)}: {error}"
        ) from None
    return Succeeded(
        service=replied.service,
        correlation_id=replied.correlation_id,
        result=value,
        repeated=replied.first_correlation_id is not None,
    )
