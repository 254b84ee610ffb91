"""The ``Projection`` base: a name, the tables it owns, and handlers by event type.

Handlers are marked with ``@handles(EventType, ...)`` — no metaclass and no dotted names:
the class collects its marked methods once, when it is defined (``__init_subclass__``),
keyed by each event class's type name, which is also the filter the store applies.

A handler is called as ``handler(self, tx, event, stored)``: ``tx`` is where the
projection's state lives (a ``SqlTransaction`` for a SQL target, a ``MemoryTransaction``
in memory), ``event`` is the decoded event and ``stored`` the ``StoredEvent`` it came from
(its position, stream, time and metadata).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any, ClassVar, Final, TypeVar

from eventcore.events import Event
from eventcore.projection.errors import InvalidProjection

__all__ = ["Handler", "Projection", "handles", "valid_identifier"]

F = TypeVar("F", bound=Callable[..., Any])
#: A bound handler: ``handler(tx, event, stored)``.
Handler = Callable[..., Any]

_MARK: Final = "__eventcore_handles__"
# Names that become parts of SQL identifiers: plain, so they never need quoting.
_IDENTIFIER: Final = re.compile(r"[a-z_][a-z0-9_]{0,47}")


def valid_identifier(name: object) -> bool:
    return isinstance(name, str) and _IDENTIFIER.fullmatch(name) is not None


def handles(*event_types: type[Event], source: str | None = None) -> Callable[[F], F]:
    """Mark a method as the handler of ``event_types`` (from ``source`` only, when given).

    ``source`` matters for a view over several services whose event type names clash.
    """
    for event_type in event_types:
        if not (isinstance(event_type, type) and issubclass(event_type, Event)):
            raise InvalidProjection(f"@handles takes Event subclasses, got {event_type!r}")
    if not event_types:
        raise InvalidProjection("@handles needs at least one event type")

    def mark(function: F) -> F:
        keys = getattr(function, _MARK, ())
        new = tuple((source, t.__event_type__) for t in event_types)
        setattr(function, _MARK, (*keys, *new))
        return function

    return mark


class Projection:
    """Subclass it, set ``name`` (and ``tables`` for a SQL target), mark handlers.

    ``setup(tx)`` creates the tables of one version; write their names as ``{orders}``
    in SQL and eventcore puts in that version's table (``orders_v2``). The live
    version's tables are also reachable under their plain names (``orders``, a view),
    so queries never need to know the version.
    """

    name: ClassVar[str]
    tables: ClassVar[tuple[str, ...]] = ()
    #: (source or None, event type name) → method name; filled per class.
    _handler_names: ClassVar[dict[tuple[str | None, str], str]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        names: dict[tuple[str | None, str], str] = {}
        # Base classes first, so a subclass's handler for a type replaces its base's.
        for klass in reversed(cls.__mro__):
            for attribute, value in vars(klass).items():
                for key in getattr(value, _MARK, ()):
                    names[key] = attribute
        cls._handler_names = names
        for table in cls.tables:
            if not valid_identifier(table):
                raise InvalidProjection(
                    f"{cls.__qualname__}: table name {table!r} must match {_IDENTIFIER.pattern}"
                )

    def __init__(self) -> None:
        name = getattr(type(self), "name", None)
        if not valid_identifier(name):
            raise InvalidProjection(
                f"{type(self).__qualname__}.name must be set, matching {_IDENTIFIER.pattern}"
            )
        if not self._handler_names:
            raise InvalidProjection(f"{type(self).__qualname__} has no @handles methods")

    def setup(self, tx: Any) -> None:
        """Create this version's tables. Runs once per version, in the transaction that
        registers the version."""

    def handled_types(self, source: str) -> frozenset[str]:
        """The type names ``source``'s follower asks the store for."""
        return frozenset(t for s, t in self._handler_names if s is None or s == source)

    def handlers_for(self, source: str) -> dict[str, Handler]:
        """Type name → bound handler, for events from ``source``."""
        found: dict[str, Handler] = {}
        for (only, type_name), attribute in self._handler_names.items():
            if only is None:
                found.setdefault(type_name, getattr(self, attribute))
        for (only, type_name), attribute in self._handler_names.items():
            if only == source:
                found[type_name] = getattr(self, attribute)  # the specific one wins
        return found

    def handler_functions(self) -> Iterable[Handler]:
        return [getattr(self, attribute) for attribute in set(self._handler_names.values())]
