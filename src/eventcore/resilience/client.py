"""``ServiceClient``: call another service by name, through its circuit breaker.

``await client.get("http://payments/orders/7")`` (or ``client.request("GET",
"/orders/7", service="payments")``) asks the resolver for the live instances of
``payments`` and sends the request to one of them, taking them in turn (round robin).

- **Failover.** An instance that refuses the connection never saw the request, so the
  next one is tried at once, whatever the method; it is then tried last for
  ``instance_cooldown`` seconds. When none accepts: ``ServiceUnavailable``.
- **Retries.** An attempt that failed otherwise (a response with a status in
  ``failure_statuses``, a connection broken after sending, an attempt past the
  breaker's ``call_timeout``) is repeated after a jittered exponential wait (``retry``),
  on the next instance, **only when the request is safe to repeat**: GET, HEAD,
  OPTIONS, PUT, DELETE, or any request carrying an ``Idempotency-Key`` header. A POST
  or PATCH without one is sent once.
- **The breaker.** Each service has one ``CircuitBreaker`` (``breaker_policy``); every
  attempt goes through it, so an open circuit fails the call at once with
  ``CircuitOpen``, before any lookup or sending, and is never retried. An attempt counts
  as failed when it raised or its status is in ``failure_statuses``; any other response,
  a 404 included, shows the service is answering. The lookup is part of the attempt: a
  service with no live instance, or whose lookup fails, counts as failing.
- **Time.** ``timeout`` (per client, or per call) bounds the whole call: lookups,
  attempts and waits. Past it: ``CallTimeout``. No wait that would end past it is begun.
- **What comes back.** A response whenever one came back, whatever its status (after
  the retries a failure status allows); ``CircuitOpen``, ``ServiceUnavailable`` or
  ``CallTimeout`` otherwise. A request that cannot be built (a URL naming no service, a
  body that is not JSON) is ``InvalidInput`` before the breaker or any instance sees it.

Each call ends with a ``RequestRecord`` to the request observers, and each breaker's
changes of state go to the state listeners: the seam the metrics attach to.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import re
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final

from eventcore._closing import Closing
from eventcore.errors import (
    CallTimeout,
    CircuitOpen,
    InvalidInput,
    InvalidUrl,
    MissingDependency,
    ServiceUnavailable,
)

try:
    import httpx
except ImportError as error:
    raise MissingDependency.of(error, "the service client") from error

from eventcore.resilience._notify import notify
from eventcore.resilience.address import Target, check_base_url, check_service
from eventcore.resilience.breaker import CircuitBreaker, StateChange, StateListener
from eventcore.resilience.breaker_policy import BreakerPolicy
from eventcore.resilience.outcome import CallOutcome, RequestObserver, RequestRecord
from eventcore.resilience.resolver import Resolver
from eventcore.resilience.retries import CALL_RETRY, retry_call, safe_to_repeat
from eventcore.retry import RetryPolicy

__all__ = ["DEFAULT_FAILURE_STATUSES", "ServiceClient"]

_logger = logging.getLogger(__name__)

#: Statuses that say the service, not the request, failed: counted by the breaker and
#: worth another attempt (when the request is safe to repeat).
DEFAULT_FAILURE_STATUSES: Final = frozenset({500, 502, 503, 504})
# An HTTP method is a token (RFC 9110 §5.6.2).
_METHOD: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# Where a call's request is built before an instance is chosen (a reserved name, RFC 2606).
_NO_INSTANCE: Final = "http://instance.invalid"

Params = Mapping[str, str | int | float | bool | list[str] | None]


class _FailureStatus(Exception):
    """An attempt answered with a failure status: raised inside the breaker so that it
    counts, caught at the end to hand the response back."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        super().__init__(f"status {response.status_code}")


@dataclass
class _Call:
    """One call in progress, across its attempts. ``request`` is built once, for no
    instance in particular; each attempt sends a copy aimed at its instance."""

    target: Target
    request: httpx.Request
    safe: bool
    seconds: float
    deadline: float
    attempts: int = 0
    instance: str | None = None
    status: int | None = None


class ServiceClient(Closing):
    """Calls services by name; see this module's docstring for the rules.

    ``resolver``: ``async (service) -> base URLs`` of its live instances (the registry,
    or a ``StaticResolver``). ``timeout``: seconds a call may take in all, unless the
    call gives its own. ``retry``: waits and attempts for requests safe to repeat.
    ``breaker_policy``: the numbers of each service's breaker. ``failure_statuses``:
    statuses counted as the service failing. ``instance_cooldown``: seconds an instance
    that refused a connection is tried last. ``clock``: what the breakers and the
    cool-downs read (deadlines use the event loop's clock). ``http``: an
    ``httpx.AsyncClient`` of your own (TLS settings, limits); it stays yours to close.
    The client's own one ignores proxy settings of the environment and has no timeouts
    of its own (the call's deadline bounds it).
    """

    def __init__(
        self,
        resolver: Resolver,
        *,
        timeout: float = 10.0,
        retry: RetryPolicy = CALL_RETRY,
        breaker_policy: BreakerPolicy | None = None,
        failure_statuses: Collection[int] = DEFAULT_FAILURE_STATUSES,
        instance_cooldown: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        http: httpx.AsyncClient | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._resolver = resolver
        self._timeout = _seconds("timeout", timeout)
        self._retry = retry
        self._breaker_policy = breaker_policy if breaker_policy is not None else BreakerPolicy()
        self._failure_statuses = frozenset(failure_statuses)
        if not math.isfinite(instance_cooldown) or instance_cooldown < 0:
            raise InvalidInput(
                f"instance_cooldown must be a number of seconds, got {instance_cooldown}"
            )
        self._cooldown = instance_cooldown
        self._clock = clock
        self._owns_http = http is None
        self._http = (
            http
            if http is not None
            else httpx.AsyncClient(timeout=httpx.Timeout(None), trust_env=False)
        )
        self._rng = rng
        self._breakers: dict[str, CircuitBreaker] = {}
        self._turns: dict[str, int] = {}
        # Base URL -> until when (clock) it is tried last, after refusing a connection.
        self._cooling: dict[str, float] = {}
        self._state_listeners: list[StateListener] = []
        self._request_observers: list[RequestObserver] = []
        self._closed = False

    # --- lifecycle ----------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close the client's connections (not those of an ``http`` client passed in).
        Closing twice does nothing; a call after closing raises ``RuntimeError``."""
        if self._closed:
            return
        self._closed = True
        if self._owns_http:
            await self._http.aclose()

    # --- breakers and observers -------------------------------------------------------

    def breaker(self, service: str) -> CircuitBreaker:
        """The circuit breaker of ``service``, made on first use."""
        found = self._breakers.get(service)
        if found is None:
            found = self._breakers[check_service(service)] = CircuitBreaker(
                service,
                self._breaker_policy,
                clock=self._clock,
                listeners=[self._state_changed],
            )
        return found

    @property
    def breakers(self) -> Mapping[str, CircuitBreaker]:
        """Every breaker made so far, by service (a live, read-only view)."""
        return MappingProxyType(self._breakers)

    def add_state_listener(self, listener: StateListener) -> None:
        """Tell ``listener`` every change of state of every breaker, present and future."""
        self._state_listeners.append(listener)

    def add_request_observer(self, observer: RequestObserver) -> None:
        """Give ``observer`` a ``RequestRecord`` at the end of every call."""
        self._request_observers.append(observer)

    def _state_changed(self, change: StateChange) -> None:
        notify(self._state_listeners, change)

    # --- calling ------------------------------------------------------------------------

    async def get(self, url: str, **options: Any) -> httpx.Response:
        return await self.request("GET", url, **options)

    async def head(self, url: str, **options: Any) -> httpx.Response:
        return await self.request("HEAD", url, **options)

    async def options(self, url: str, **options: Any) -> httpx.Response:
        return await self.request("OPTIONS", url, **options)

    async def delete(self, url: str, **options: Any) -> httpx.Response:
        return await self.request("DELETE", url, **options)

    async def post(self, url: str, **options: Any) -> httpx.Response:
        return await self.request("POST", url, **options)

    async def put(self, url: str, **options: Any) -> httpx.Response:
        return await self.request("PUT", url, **options)

    async def patch(self, url: str, **options: Any) -> httpx.Response:
        return await self.request("PATCH", url, **options)

    async def request(
        self,
        method: str,
        url: str,
        *,
        service: str | None = None,
        params: Params | None = None,
        headers: Mapping[str, str] | None = None,
        content: bytes | str | None = None,
        json: object = None,
        # A deadline the call plans by (no wait begun past it, the attempt it cuts short
        # counted by the breaker), which an asyncio.timeout around the call cannot be.
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> httpx.Response:
        """Send ``method`` to ``url`` (``http://<service>/<path>``, or a path with
        ``service=``) on a live instance of the service, by the rules of this module."""
        if self._closed:
            raise RuntimeError("this ServiceClient is closed")
        if not isinstance(method, str) or _METHOD.fullmatch(method) is None:
            raise InvalidInput(f"not an HTTP method: {method!r}")
        target = Target.of(url, service)
        seconds = self._timeout if timeout is None else _seconds("timeout", timeout)
        method = method.upper()
        try:
            request = self._http.build_request(
                method,
                _NO_INSTANCE + target.path,
                params=params,
                headers=headers,
                content=content,
                json=json,
            )
        except (TypeError, ValueError, httpx.InvalidURL) as error:
            raise InvalidInput(f"the request cannot be built: {error}") from error
        loop = asyncio.get_running_loop()
        started = loop.time()
        call = _Call(
            target=target,
            request=request,
            safe=safe_to_repeat(method, request.headers.multi_items()),
            seconds=seconds,
            deadline=started + seconds,
        )
        outcome = CallOutcome.ERROR
        try:
            response = await retry_call(
                lambda: self._attempt(call),
                safe=call.safe,
                policy=self._retry,
                retry_on=_worth_another_attempt,
                deadline=call.deadline,
                rng=self._rng,
            )
            outcome = CallOutcome.SUCCESS
            return response
        except _FailureStatus as failed:
            outcome = CallOutcome.SERVER_ERROR
            return failed.response
        except CircuitOpen:
            outcome = CallOutcome.CIRCUIT_OPEN
            raise
        except ServiceUnavailable:
            outcome = CallOutcome.UNAVAILABLE
            raise
        except CallTimeout:
            outcome = CallOutcome.TIMEOUT
            raise
        except asyncio.CancelledError:
            outcome = CallOutcome.CANCELLED
            raise
        finally:
            record = RequestRecord(
                target=target.service,
                method=method,
                outcome=outcome,
                status=call.status,
                attempts=call.attempts,
                duration=loop.time() - started,
                instance=call.instance,
            )
            notify(self._request_observers, record)

    async def _attempt(self, call: _Call) -> httpx.Response:
        """One attempt through the service's breaker: look up, send, judge the status."""
        service = call.target.service
        remaining = call.deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            raise CallTimeout(service, call.seconds)
        breaker = self.breaker(service)
        call_timeout = breaker.policy.call_timeout
        try:
            async with breaker.guard(timeout=remaining):
                call.attempts += 1
                instances = await self._instances(service)
                response = await self._send(call, instances)
                call.status = response.status_code
                if response.status_code in self._failure_statuses:
                    raise _FailureStatus(response)
                return response
        except CallTimeout as timed_out:
            if call_timeout is None or call_timeout >= remaining:
                # The call's own deadline, not the attempt's limit: the call is over.
                raise CallTimeout(service, call.seconds) from timed_out
            raise

    async def _instances(self, service: str) -> list[str]:
        """The checked base URLs of the service's live instances, in a stable order."""
        try:
            found = await self._resolver(service)
        except Exception as error:
            raise ServiceUnavailable(
                service, f"its instances could not be looked up: {_describe(error)}"
            ) from error
        bases: set[str] = set()
        for address in found:
            try:
                bases.add(check_base_url(address))
            except InvalidUrl as error:
                _logger.warning("an instance of %r is left out: %s", service, error)
        if not bases:
            raise ServiceUnavailable(service, "it has no live instance")
        return sorted(bases)

    async def _send(self, call: _Call, instances: list[str]) -> httpx.Response:
        """Send to the instance whose turn it is, failing over to the others while they
        refuse the connection (the request never left, so any method may fail over)."""
        service = call.target.service
        turn = self._turns.get(service, 0)
        self._turns[service] = turn + 1
        start = turn % len(instances)
        rotation = instances[start:] + instances[:start]
        now = self._clock()
        order = sorted(rotation, key=lambda base: self._cooling.get(base, now) > now)
        refusals: list[str] = []
        refused: httpx.HTTPError | None = None
        for base in order:
            call.instance = base
            sent_at = asyncio.get_running_loop().time()
            try:
                response = await self._http.send(_aimed_at(call.request, base))
            except (httpx.ConnectError, httpx.ConnectTimeout) as error:
                self._cool_down(base)
                refusals.append(f"{base} ({_describe(error)})")
                refused = error
                continue
            except httpx.TimeoutException as error:
                # The http client's own timeouts (one passed in may have them).
                waited = asyncio.get_running_loop().time() - sent_at
                raise CallTimeout(service, waited) from error
            except httpx.TransportError as error:
                raise ServiceUnavailable(
                    service, _broken_after_sending(base, error, safe=call.safe)
                ) from error
            self._cooling.pop(base, None)
            return response
        raise ServiceUnavailable(
            service, "no instance accepted a connection: " + "; ".join(refusals)
        ) from refused

    def _cool_down(self, base: str) -> None:
        now = self._clock()
        # Forget the cool-downs that are over, so instances long gone leave no trace.
        for other, until in list(self._cooling.items()):
            if until <= now:
                del self._cooling[other]
        self._cooling[base] = now + self._cooldown


def _aimed_at(request: httpx.Request, base: str) -> httpx.Request:
    """``request`` sent to the instance at ``base``: the same method, path, query,
    headers and body; the Host header is the instance's."""
    headers = request.headers.copy()
    del headers["host"]
    return httpx.Request(
        request.method,
        base + request.url.raw_path.decode("ascii"),
        headers=headers,
        content=request.content,
        extensions=request.extensions,
    )


def _worth_another_attempt(error: Exception) -> bool:
    # An open circuit is not tried again within the call: its reset timeout is longer
    # than any wait between attempts.
    return isinstance(error, ServiceUnavailable | CallTimeout | _FailureStatus)


def _broken_after_sending(base: str, error: httpx.TransportError, *, safe: bool) -> str:
    reason = f"the connection to {base} failed after the request was sent ({_describe(error)})"
    if safe:
        return reason
    return (
        reason + "; the request is not safe to repeat (no idempotent method, no"
        " Idempotency-Key), so it was sent once and may have taken effect"
    )


def _describe(error: Exception) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _seconds(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput(f"{name} must be a number of seconds, got {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise InvalidInput(f"{name} must be a positive number of seconds, got {value}")
    return float(value)
