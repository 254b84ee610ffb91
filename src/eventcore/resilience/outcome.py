"""What a service client tells its observers about each call: the seam metrics attach to.

One ``RequestRecord`` per call the caller made (however many attempts it took), given
to every observer when the call ends. ``outcome`` and ``target`` are the labels of
``eventcore_client_requests_total{target,outcome}``, ``duration`` feeds
``eventcore_client_request_duration_seconds{target}``.
"""

from __future__ import annotations

import enum
from collections.abc import Callable

import msgspec

__all__ = ["CallOutcome", "RequestObserver", "RequestRecord"]


class CallOutcome(enum.Enum):
    #: A response came back that the breaker counts as a success (below 500, say).
    SUCCESS = "success"
    #: The last attempt's response had a failure status (a 503, say); it was returned.
    SERVER_ERROR = "server_error"
    #: ``CircuitOpen``: the breaker refused, nothing was sent.
    CIRCUIT_OPEN = "circuit_open"
    #: ``ServiceUnavailable``: no instance, none reachable, or a connection broke.
    UNAVAILABLE = "unavailable"
    #: ``CallTimeout``.
    TIMEOUT = "timeout"
    #: The caller's task was cancelled.
    CANCELLED = "cancelled"
    #: Any other error (the response could not be decoded, say).
    ERROR = "error"


class RequestRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One call: its service, method, how it ended, the last response's status (None
    without one), the attempts sent or tried, its seconds from start to end, and the base
    URL of the instance it last went to (None when it went to none)."""

    target: str
    method: str
    outcome: CallOutcome
    status: int | None
    attempts: int
    duration: float
    instance: str | None


RequestObserver = Callable[[RequestRecord], None]
