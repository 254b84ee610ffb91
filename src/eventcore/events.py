"""Events: the ``Event`` base, the registry of known types, upcasters and the JSON codec.

An event class is a frozen msgspec Struct. Its type name is the class name unless the
class sets ``__event_type__``; its schema version is ``__event_version__`` (default 1).
When a payload shape changes, bump the version and register an upcaster that turns a
payload of the old version into the next one; stored events are upgraded on read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import msgspec

from eventcore.errors import DecodeError, InvalidInput, UnknownEventType
from eventcore.types import EMPTY_METADATA, Metadata, NewEvent, StoredEvent, StreamId, new_event_id

__all__ = ["Event", "EventRegistry", "Upcaster"]


class _EventBase:
    """What every event class has: its type name and schema version."""

    __slots__ = ()
    __event_type__: ClassVar[str] = "Event"
    __event_version__: ClassVar[int] = 1

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__event_type__" not in cls.__dict__:
            cls.__event_type__ = cls.__name__
        version = cls.__event_version__
        if not isinstance(version, int) or version < 1:
            raise InvalidInput(f"{cls.__name__}.__event_version__ must be an int >= 1")


if TYPE_CHECKING:
    from typing import dataclass_transform

    # msgspec tells type checkers that a Struct subclass is *not* frozen unless it says
    # so again, which would make users write ``class Paid(Event, frozen=True)`` for every
    # event. Type checkers see this declaration instead: every subclass frozen and
    # keyword-only, which is exactly what the runtime class below gives.
    @dataclass_transform(
        frozen_default=True, kw_only_default=True, field_specifiers=(msgspec.field,)
    )
    class Event(_EventBase):
        """Base class of every event. Subclass it and declare the payload's fields."""

        __slots__ = ()

else:

    class Event(msgspec.Struct, _EventBase, frozen=True, kw_only=True):
        """Base class of every event. Subclass it and declare the payload's fields."""


E = TypeVar("E", bound=type[Event])

#: Turns a payload of one schema version into the payload of the next.
Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


class EventRegistry:
    """The event types a service knows, and how to encode, decode and upgrade them.

    >>> registry = EventRegistry()
    >>> @registry.register
    ... class Deposited(Event):
    ...     amount: int
    """

    def __init__(self, types: Iterable[type[Event]] = ()) -> None:
        self._types: dict[str, type[Event]] = {}
        self._decoders: dict[str, msgspec.json.Decoder[Any]] = {}
        self._upcasters: dict[tuple[str, int], Upcaster] = {}
        self._encoder = msgspec.json.Encoder(enc_hook=_encode_value)
        for event_type in types:
            self.register(event_type)

    def register(self, event_type: E) -> E:
        """Add an event class (usable as a class decorator)."""
        if not (isinstance(event_type, type) and issubclass(event_type, Event)):
            raise InvalidInput(f"{event_type!r} is not a subclass of Event")
        name = event_type.__event_type__
        known = self._types.get(name)
        if known is not None and known is not event_type:
            raise InvalidInput(f"event type {name!r} is already registered to {known.__qualname__}")
        self._types[name] = event_type
        self._decoders[name] = msgspec.json.Decoder(event_type, dec_hook=_decode_value)
        return event_type

    def upcaster(self, event_type: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
        """Register a function that upgrades ``event_type`` payloads from ``from_version``."""

        def decorate(function: Upcaster) -> Upcaster:
            key = (event_type, from_version)
            if key in self._upcasters:
                raise InvalidInput(
                    f"an upcaster for {event_type!r} version {from_version} is already registered"
                )
            self._upcasters[key] = function
            return function

        return decorate

    def __contains__(self, name: object) -> bool:
        return name in self._types

    def __iter__(self) -> Any:
        return iter(self._types.values())

    def type_of(self, name: str) -> type[Event]:
        try:
            return self._types[name]
        except KeyError:
            raise UnknownEventType(name) from None

    # --- codec ---------------------------------------------------------------------------

    def encode(
        self, event: Event, *, metadata: Metadata = EMPTY_METADATA, event_id: Any = None
    ) -> NewEvent:
        """Turn an event into the bytes a store keeps."""
        cls = type(event)
        if self._types.get(cls.__event_type__) is not cls:
            raise UnknownEventType(cls.__event_type__)
        return NewEvent(
            type=cls.__event_type__,
            schema_version=cls.__event_version__,
            data=self._encoder.encode(event),
            metadata=metadata,
            event_id=event_id if event_id is not None else new_event_id(),
        )

    def decode(self, stored: StoredEvent) -> Event:
        """Turn a stored event back into its class, upgrading an old payload first."""
        return self.decode_payload(stored.type, stored.schema_version, stored.data)

    def decode_payload(self, name: str, schema_version: int, data: bytes) -> Event:
        cls = self._types.get(name)
        if cls is None:
            raise UnknownEventType(name)
        try:
            if schema_version == cls.__event_version__:
                event: Event = self._decoders[name].decode(data)
                return event
            return self._upgrade(cls, schema_version, data)
        except msgspec.ValidationError as error:
            raise DecodeError(f"payload of {name!r} does not match its class: {error}") from error
        except msgspec.DecodeError as error:
            raise DecodeError(f"payload of {name!r} is not valid JSON: {error}") from error

    def _upgrade(self, cls: type[Event], schema_version: int, data: bytes) -> Event:
        name = cls.__event_type__
        target = cls.__event_version__
        if schema_version > target:
            raise DecodeError(
                f"{name!r} was stored at schema version {schema_version}, "
                f"newer than this reader's version {target}"
            )
        payload = msgspec.json.decode(data)
        if not isinstance(payload, dict):
            raise DecodeError(f"payload of {name!r} is not a JSON object")
        for version in range(schema_version, target):
            upcaster = self._upcasters.get((name, version))
            if upcaster is None:
                raise DecodeError(
                    f"no upcaster for {name!r} from schema version {version} to {version + 1}"
                )
            try:
                payload = upcaster(payload)
            except Exception as error:
                raise DecodeError(
                    f"the upcaster of {name!r} from schema version {version} failed: {error!r}"
                ) from error
            if not isinstance(payload, dict):
                raise DecodeError(
                    f"the upcaster of {name!r} from schema version {version} "
                    f"returned {type(payload).__name__}, not a dict"
                )
        return msgspec.convert(payload, cls, dec_hook=_decode_value)


def _encode_value(value: Any) -> Any:
    # StreamId is a str subclass; msgspec only encodes str itself.
    if isinstance(value, str):
        return str(value)
    raise NotImplementedError(f"cannot encode {type(value).__name__} in an event")


def _decode_value(kind: type[Any], value: Any) -> Any:
    # A field typed StreamId is validated on the way in, like any other StreamId.
    if kind is StreamId and isinstance(value, str):
        return StreamId(value)
    raise NotImplementedError(f"cannot decode {type(value).__name__} as {kind}")
