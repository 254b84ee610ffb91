"""``TopicMap``: which of a service's event types are published, and to which topic.

A service publishes its facts, not its internals: only the types named here leave
the service. The relay skips every other type (and counts them).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from eventcore.errors import InvalidInput
from eventcore.events import Event
from eventcore.messaging.names import check_name

__all__ = ["TopicMap"]


class TopicMap:
    """Event type → topic.

    >>> topics = TopicMap({"UserRegistered": "user-events"})
    >>> topics.topic_for("UserRegistered"), topics.topic_for("PasswordChanged")
    ('user-events', None)

    Keys may be type names or event classes; ``route(topic, *types)`` adds more.
    """

    def __init__(self, routes: Mapping[str | type[Event], str] | None = None) -> None:
        self._routes: dict[str, str] = {}
        for event_type, topic in (routes or {}).items():
            self.route(topic, event_type)

    def route(self, topic: str, *event_types: str | type[Event]) -> TopicMap:
        """Send ``event_types`` to ``topic``; returns the map, for chaining."""
        check_name("topic", topic)
        for event_type in event_types:
            name = _type_name(event_type)
            known = self._routes.get(name)
            if known is not None and known != topic:
                raise InvalidInput(f"event type {name!r} already goes to topic {known!r}")
            self._routes[name] = topic
        return self

    def topic_for(self, event_type: str) -> str | None:
        """The topic of ``event_type``, or None when it is not published."""
        return self._routes.get(event_type)

    @property
    def topics(self) -> frozenset[str]:
        return frozenset(self._routes.values())

    def types_of(self, topic: str) -> frozenset[str]:
        return frozenset(name for name, to in self._routes.items() if to == topic)

    def __len__(self) -> int:
        return len(self._routes)

    def __iter__(self) -> Iterable[tuple[str, str]]:
        return iter(sorted(self._routes.items()))

    def __repr__(self) -> str:
        return f"TopicMap({dict(sorted(self._routes.items()))!r})"


def _type_name(event_type: str | type[Event]) -> str:
    if isinstance(event_type, str):
        if not event_type:
            raise InvalidInput("an event type name cannot be empty")
        return event_type
    if isinstance(event_type, type) and issubclass(event_type, Event):
        return event_type.__event_type__
    raise InvalidInput(f"{event_type!r} is neither an event type name nor an Event class")
