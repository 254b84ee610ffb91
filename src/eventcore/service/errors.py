"""The errors of the service runtime, under ``EventcoreError`` (see ``eventcore.errors``).

::

    EventcoreError
    ├── InvalidInput
    │   ├── InvalidService       a service declaration that cannot run (fix it; nothing started)
    │   └── UnknownCommand       a command name the service does not accept
    └── ServiceDraining          the service is stopping and takes no new work: try another
                                 instance (HTTP 503)
"""

from __future__ import annotations

from eventcore.errors import EventcoreError, InvalidInput

__all__ = ["InvalidService", "ServiceDraining", "UnknownCommand"]


class InvalidService(InvalidInput):
    """The service's declaration or configuration cannot run; nothing was started."""


class UnknownCommand(InvalidInput):
    """``name`` is not a command the service accepts."""

    def __init__(self, service: str, name: str) -> None:
        self.service = service
        self.name = name
        super().__init__(f"service {service!r} accepts no command named {name!r}")


class ServiceDraining(EventcoreError):
    """The service is shutting down and refuses new work; nothing was done. Another
    instance (or this one, restarted) will take it."""

    def __init__(self, service: str) -> None:
        self.service = service
        super().__init__(f"service {service!r} is shutting down and takes no new work")
