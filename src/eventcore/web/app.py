"""The HTTP face of a service: ``create_app(service)`` is a Starlette app with

- ``POST /commands/{Name}``: the body decoded and validated by msgspec as the command
  ``Name``; an ``Idempotency-Key`` header makes a retry write nothing twice; 200 with
  what was written, or a problem (``eventcore.web.problems``);
- ``GET /streams/{id}``, ``GET /events?after=&limit=&types=``: reads;
- ``GET /health/live``, ``GET /health/ready``, ``GET /status``, ``GET /metrics``;
- ``GET /openapi.json``, ``GET /asyncapi.json``: the service's contracts.

Authentication, authorisation and request limits (``eventcore.web.security``) are
middleware given in ``middleware``, outermost first; the principal the authentication
authenticated (``principal_of``) becomes the events' ``actor``. Commands and reads pass
the service's intake, so a draining service answers them 503 while probes still answer.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

import msgspec
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from eventcore.command import Command
from eventcore.errors import InvalidInput, StreamNotFound
from eventcore.service import Service, readiness, status
from eventcore.types import StreamId
from eventcore.web.asyncapi import asyncapi
from eventcore.web.openapi import openapi
from eventcore.web.principal import actor_metadata, principal_of
from eventcore.web.problems import problem, problem_of
from eventcore.web.wire import (
    EventPage,
    StreamView,
    accepted_of,
    decode_value,
    encode_value,
    view_of,
)

__all__ = ["MAX_IDEMPOTENCY_KEY", "MAX_PAGE", "create_app"]
#: The most events one ``GET /events`` page holds.
MAX_PAGE = 1000
#: The longest ``Idempotency-Key`` accepted.
MAX_IDEMPOTENCY_KEY = 200

_encoder = msgspec.json.Encoder(enc_hook=encode_value)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


def _json(value: Any, status_code: int = 200) -> Response:
    return Response(_encoder.encode(value), status_code=status_code, media_type="application/json")


class _Asgi:
    """An ASGI app as a route endpoint (Starlette calls plain functions as handlers)."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._app(scope, receive, send)


def _metrics_endpoint() -> _Asgi | None:
    try:
        exposition = importlib.import_module("eventcore.observability.exposition")
    except ImportError:
        return None
    return _Asgi(exposition.metrics_app())


class _Face:
    """The route handlers, over one service."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.decoders: dict[str, msgspec.json.Decoder[Any]] = {
            name: msgspec.json.Decoder(kind, dec_hook=decode_value)
            for name, kind in service.command_types.items()
        }
        self.openapi = msgspec.json.encode(openapi(service))
        self.asyncapi = msgspec.json.encode(asyncapi(service))

    async def command(self, request: Request) -> Response:
        name = request.path_params["name"]
        try:
            self.service.command_named(name)
            key = request.headers.get("idempotency-key")
            if key is not None and not (0 < len(key) <= MAX_IDEMPOTENCY_KEY):
                return problem(
                    "invalid-input",
                    "Invalid input",
                    422,
                    f"an Idempotency-Key has 1 to {MAX_IDEMPOTENCY_KEY} characters",
                    request.url.path,
                )
            command: Command[Any] = self.decoders[name].decode(await request.body())
            result = await self.service.execute(
                command,
                # Scoped by command: one key reused for another command is another request.
                idempotency_key=None if key is None else f"http:{name}:{key}",
                metadata=actor_metadata(principal_of(request)),
            )
        except Exception as error:
            # Every error becomes its problem answer; one not mapped is a logged 500.
            return problem_of(error, request.url.path)
        return _json(accepted_of(name, result))

    async def stream(self, request: Request) -> Response:
        try:
            start = _bounded(request.query_params.get("from"), "from", 1, 2**63 - 1, 1)
            limit = _bounded(request.query_params.get("limit"), "limit", 1, MAX_PAGE, MAX_PAGE)
            with self.service.intake.admit():
                stream_id = StreamId(request.path_params["stream_id"])
                version = await self.service.store.stream_version(stream_id)
                if version == 0:
                    raise StreamNotFound(stream_id)
                events = await self.service.store.read_stream(stream_id, from_version=start)
        except Exception as error:
            return problem_of(error, request.url.path)
        page = events[:limit]
        return _json(
            StreamView(
                stream_id=str(stream_id),
                version=version,
                events=[view_of(event) for event in page],
                next_from=page[-1].version + 1 if len(events) > limit else None,
            )
        )

    async def events(self, request: Request) -> Response:
        try:
            after = _bounded(request.query_params.get("after"), "after", 0, 2**63 - 1, 0)
            limit = _bounded(request.query_params.get("limit"), "limit", 1, MAX_PAGE, 100)
            given = request.query_params.get("types")
            types = [t.strip() for t in given.split(",") if t.strip()] if given else None
            with self.service.intake.admit():
                found = []
                async for batch in self.service.store.read_all(
                    after=after, types=types, batch_size=limit, limit=limit
                ):
                    found.extend(batch)
                    if len(found) >= limit:
                        break
        except Exception as error:
            return problem_of(error, request.url.path)
        page = found[:limit]
        return _json(
            EventPage(
                events=[view_of(event) for event in page],
                next_after=page[-1].position if len(page) == limit else None,
            )
        )

    async def live(self, request: Request) -> Response:
        return _json({"status": "alive", "service": self.service.name})

    async def ready(self, request: Request) -> Response:
        found = await readiness(self.service)
        return _json(found, 200 if found.status == "ready" else 503)

    async def status(self, request: Request) -> Response:
        return _json(await status(self.service))

    async def openapi_json(self, request: Request) -> Response:
        return Response(self.openapi, media_type="application/json")

    async def asyncapi_json(self, request: Request) -> Response:
        return Response(self.asyncapi, media_type="application/json")


def _bounded(value: str | None, name: str, low: int, high: int, default: int) -> int:
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise InvalidInput(f"{name} must be a whole number, got {value!r}") from None
    if not low <= number <= high:
        raise InvalidInput(f"{name} must be from {low} to {high}, got {number}")
    return number


def create_app(service: Service, *, middleware: Sequence[Middleware] = ()) -> Starlette:
    """The Starlette app of ``service`` (started and run by its owner, e.g.
    ``eventcore serve``); ``middleware`` wraps every route, outermost first."""
    face = _Face(service)
    routes = [
        Route("/commands/{name}", face.command, methods=["POST"]),
        Route("/streams/{stream_id:path}", face.stream, methods=["GET"]),
        Route("/events", face.events, methods=["GET"]),
        Route("/health/live", face.live, methods=["GET"]),
        Route("/health/ready", face.ready, methods=["GET"]),
        Route("/status", face.status, methods=["GET"]),
        Route("/openapi.json", face.openapi_json, methods=["GET"]),
        Route("/asyncapi.json", face.asyncapi_json, methods=["GET"]),
    ]
    metrics = _metrics_endpoint()
    if metrics is not None:
        routes.append(Route("/metrics", metrics, methods=["GET"]))
    return Starlette(routes=routes, middleware=list(middleware))
