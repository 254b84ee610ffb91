"""Bounds on what one HTTP request may cost: its headers, its body, its time.

``LimitsMiddleware`` enforces, before the endpoint runs:

* **headers** — at most ``max_headers`` of them and ``max_header_bytes`` in all, else
  **431** (uvicorn bounds a request head's size on its own too; see
  ``h11_max_incomplete_event_size``, but not the number of headers);
* **body size** — a ``Content-Length`` over ``max_body_bytes`` is **413** before a byte
  is read; a body sent without one is counted as it arrives and refused (**413**) at the
  first chunk past the limit: it is never read whole;
* **slow bodies** — the whole body must arrive within ``body_timeout`` seconds, else
  **408**: a client that trickles a byte at a time holds nothing for long;
* **JSON nesting** — a JSON body nested deeper than ``max_json_depth`` is **422**
  before any decoder recurses into it;

and then gives the endpoint ``deadline`` seconds to start its response, else **504**
(the endpoint is cancelled). A response that has started (a stream of server-sent
events) is not cut off. Keep ``deadline`` above the command timeout, so that a command
that runs late is answered by the executor's own timeout.

Refusals are ``application/problem+json``; those sent before the body was read whole
close the connection.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from eventcore.errors import InvalidSettings
from eventcore.web.refusal import Refusal, send_refusal

__all__ = [
    "BODY_TIMEOUT",
    "DEADLINE_EXCEEDED",
    "HEADERS_TOO_LARGE",
    "INVALID_INPUT",
    "PAYLOAD_TOO_LARGE",
    "Limits",
    "LimitsMiddleware",
    "json_nesting_exceeds",
]

HEADERS_TOO_LARGE: Final = Refusal(
    slug="headers-too-large", title="Request headers too large", status=431
)
PAYLOAD_TOO_LARGE: Final = Refusal(slug="payload-too-large", title="Payload too large", status=413)
BODY_TIMEOUT: Final = Refusal(slug="request-timeout", title="Request body too slow", status=408)
INVALID_INPUT: Final = Refusal(slug="invalid-input", title="Invalid input", status=422)
DEADLINE_EXCEEDED: Final = Refusal(
    slug="deadline-exceeded", title="Request deadline exceeded", status=504
)

_STRING: Final = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKET: Final = re.compile(rb"[\[\]{}]")


@dataclass(frozen=True)
class Limits:
    """What one request may cost (see the module). ``deadline=None`` sets none."""

    max_body_bytes: int = 1024 * 1024
    max_headers: int = 100
    max_header_bytes: int = 16 * 1024
    max_json_depth: int = 32
    body_timeout: float = 10.0
    deadline: float | None = 30.0

    def __post_init__(self) -> None:
        for name in ("max_body_bytes", "max_headers", "max_header_bytes", "max_json_depth"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidSettings(name, f"expected a whole number of at least 1, got {value!r}")
        for name in ("body_timeout", "deadline"):
            value = getattr(self, name)
            if value is None and name == "deadline":
                continue
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise InvalidSettings(name, f"expected seconds above 0, got {value!r}")
            if value != value or value == float("inf"):
                raise InvalidSettings(name, f"expected a finite number of seconds, got {value!r}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Limits:
        """Limits from ``EVENTCORE_MAX_BODY_BYTES``, ``EVENTCORE_MAX_HEADERS``,
        ``EVENTCORE_MAX_HEADER_BYTES``, ``EVENTCORE_MAX_JSON_DEPTH``,
        ``EVENTCORE_BODY_TIMEOUT`` and ``EVENTCORE_REQUEST_DEADLINE`` (seconds; ``0``
        for none), each defaulting to the field's default."""
        env = os.environ if environ is None else environ
        given: dict[str, Any] = {}
        for name, variable in (
            ("max_body_bytes", "EVENTCORE_MAX_BODY_BYTES"),
            ("max_headers", "EVENTCORE_MAX_HEADERS"),
            ("max_header_bytes", "EVENTCORE_MAX_HEADER_BYTES"),
            ("max_json_depth", "EVENTCORE_MAX_JSON_DEPTH"),
        ):
            text = env.get(variable, "").strip()
            if text:
                if not text.isascii() or not text.isdigit():
                    raise InvalidSettings(variable, f"{text!r} is not a whole number")
                given[name] = int(text)
        for name, variable in (
            ("body_timeout", "EVENTCORE_BODY_TIMEOUT"),
            ("deadline", "EVENTCORE_REQUEST_DEADLINE"),
        ):
            text = env.get(variable, "").strip()
            if text:
                try:
                    seconds = float(text)
                except ValueError:
                    raise InvalidSettings(variable, f"{text!r} is not a number") from None
                given[name] = None if name == "deadline" and seconds == 0 else seconds
        return cls(**given)


def json_nesting_exceeds(body: bytes, limit: int) -> bool:
    """True when the JSON text ``body`` opens more than ``limit`` arrays and objects
    inside one another (brackets inside strings do not count)."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    depth = 0
    for bracket in _BRACKET.finditer(_STRING.sub(b'""', body)):
        if bracket[0] in (b"[", b"{"):
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


class LimitsMiddleware:
    """Enforces ``Limits`` on every HTTP request (see the module)."""

    def __init__(self, app: ASGIApp, limits: Limits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limits = self.limits
        path: str = scope["path"]
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        size = sum(len(name) + len(value) for name, value in headers)
        if len(headers) > limits.max_headers or size > limits.max_header_bytes:
            await send_refusal(
                send,
                HEADERS_TOO_LARGE,
                f"at most {limits.max_headers} headers of {limits.max_header_bytes} bytes in all",
                instance=path,
                close=True,
            )
            return
        declared = _content_length(headers)
        if declared is not None and declared > limits.max_body_bytes:
            await self._too_large(send, path)
            return
        try:
            body = await self._read_body(receive)
        except _TooLarge:
            await self._too_large(send, path)
            return
        except TimeoutError:
            await send_refusal(
                send,
                BODY_TIMEOUT,
                f"the body did not arrive within {limits.body_timeout:g} seconds",
                instance=path,
                close=True,
            )
            return
        if body is None:  # The client went away while sending.
            return
        if body and _is_json(headers) and json_nesting_exceeds(body, limits.max_json_depth):
            await send_refusal(
                send,
                INVALID_INPUT,
                f"the JSON body is nested deeper than {limits.max_json_depth} levels",
                instance=path,
            )
            return
        await self._run(scope, _replaying(body, receive), send)

    async def _read_body(self, receive: Receive) -> bytes | None:
        """The whole body, or None when the client disconnected; ``_TooLarge`` past the
        limit, ``TimeoutError`` past ``body_timeout``."""
        chunks: list[bytes] = []
        received = 0
        async with asyncio.timeout(self.limits.body_timeout):
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return None
                chunk: bytes = message.get("body", b"")
                received += len(chunk)
                if received > self.limits.max_body_bytes:
                    raise _TooLarge
                chunks.append(chunk)
                if not message.get("more_body", False):
                    return b"".join(chunks)

    async def _run(self, scope: Scope, receive: Receive, send: Send) -> None:
        deadline = self.limits.deadline
        if deadline is None:
            await self.app(scope, receive, send)
            return
        started = False

        async def watched_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start" and not started:
                started = True
                # A response under way (a stream, say) is not cut off by the deadline.
                window.reschedule(None)
            await send(message)

        try:
            async with asyncio.timeout(deadline) as window:
                await self.app(scope, receive, watched_send)
        except TimeoutError:
            if not window.expired() or started:
                raise
            await send_refusal(
                send,
                DEADLINE_EXCEEDED,
                f"no response within {deadline:g} seconds",
                instance=scope["path"],
            )

    async def _too_large(self, send: Send, path: str) -> None:
        await send_refusal(
            send,
            PAYLOAD_TOO_LARGE,
            f"the body is over {self.limits.max_body_bytes} bytes",
            instance=path,
            close=True,
        )


class _TooLarge(Exception):
    pass


def _content_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    for name, value in headers:
        if name == b"content-length":
            text = value.strip()
            return int(text) if text.isdigit() else None
    return None


def _is_json(headers: list[tuple[bytes, bytes]]) -> bool:
    for name, value in headers:
        if name == b"content-type":
            media = value.partition(b";")[0].strip().lower()
            return media == b"application/json" or media.endswith(b"+json")
    # A command endpoint decodes its body as JSON whatever the header says.
    return True


def _replaying(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives the body read already, then whatever comes next (a
    disconnect, for endpoints that watch for one)."""
    given = False

    async def replay() -> Message:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
