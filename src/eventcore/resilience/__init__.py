"""Calling other services and surviving their failures.

- ``CircuitBreaker`` (rules in ``eventcore.resilience.breaker``, numbers in
  ``BreakerPolicy``): closed / open / half-open over a rolling window, with limited
  half-open probes, errors that do not count, state listeners and an injectable clock.
- ``retry_call`` and ``safe_to_repeat``: jittered exponential backoff, only for calls
  safe to repeat.
- ``ServiceClient``: HTTP to a service by name (``http://payments/...``) through a
  ``Resolver`` (``StaticResolver``, or the service registry), round robin over live
  instances, failover, per-call deadlines, retries for safe requests, one breaker per
  service. Its observers get a ``RequestRecord`` per call.

The errors are in ``eventcore.errors``: ``CircuitOpen``, ``ServiceUnavailable`` and
``CallTimeout``, under ``ServiceCallError``.

The client needs httpx (``pip install 'eventcore[runtime]'``); it is imported when first
named, so the breaker and the retry helper work without it.
"""

from typing import TYPE_CHECKING, Any

from eventcore.resilience.address import Target, check_base_url, check_service
from eventcore.resilience.breaker import (
    BreakerState,
    BreakerStats,
    CircuitBreaker,
    StateChange,
    StateListener,
)
from eventcore.resilience.breaker_policy import BreakerPolicy
from eventcore.resilience.outcome import CallOutcome, RequestObserver, RequestRecord
from eventcore.resilience.resolver import Resolver, StaticResolver
from eventcore.resilience.retries import (
    CALL_RETRY,
    IDEMPOTENCY_KEY,
    IDEMPOTENT_METHODS,
    retry_call,
    safe_to_repeat,
)

__all__ = [
    "CALL_RETRY",
    "DEFAULT_FAILURE_STATUSES",
    "IDEMPOTENCY_KEY",
    "IDEMPOTENT_METHODS",
    "BreakerPolicy",
    "BreakerState",
    "BreakerStats",
    "CallOutcome",
    "CircuitBreaker",
    "RequestObserver",
    "RequestRecord",
    "Resolver",
    "ServiceClient",
    "StateChange",
    "StateListener",
    "StaticResolver",
    "Target",
    "check_base_url",
    "check_service",
    "retry_call",
    "safe_to_repeat",
]

if TYPE_CHECKING:
    from eventcore.resilience.client import DEFAULT_FAILURE_STATUSES, ServiceClient

_NEEDS_HTTPX = {"DEFAULT_FAILURE_STATUSES", "ServiceClient"}


def __getattr__(name: str) -> Any:
    if name not in _NEEDS_HTTPX:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from eventcore.resilience import client

    return getattr(client, name)
