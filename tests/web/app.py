"""A tiny service face for the security tests: one command endpoint over a real store.

``POST /commands/Deposit`` runs ``Deposit`` with the request's principal as the actor;
``GET /health/live`` and ``GET /metrics`` answer plainly; ``GET /slow`` takes as long
as the test says; ``GET /stream`` starts a response at once and ends when released.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import msgspec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from eventcore import Command, Event, EventRegistry, EventStore, Executor, StreamId, Writes
from eventcore.web.principal import actor_metadata, principal_of


class Deposited(Event):
    amount: int


class Deposit(Command[int]):
    account: StreamId
    amount: int

    creates_streams = True

    def initial_state(self) -> int:
        return 0

    def apply(self, state: int, stream_id: StreamId, event: Event) -> int:
        return state + 1

    def handle(self, state: int) -> Writes:
        return {self.account: [Deposited(amount=self.amount)]}


class _DepositBody(msgspec.Struct):
    account: str
    amount: int


REGISTRY = EventRegistry([Deposited])


@dataclass
class Face:
    """The app and what it saw."""

    store: EventStore
    slow_seconds: float = 0.0
    release: asyncio.Event = field(default_factory=asyncio.Event)
    bodies: list[bytes] = field(default_factory=list)

    def app(self) -> Starlette:
        executor = Executor(self.store, REGISTRY)

        async def command(request: Request) -> Response:
            body = await request.body()
            self.bodies.append(body)
            given = msgspec.json.decode(body, type=_DepositBody)
            command = Deposit(account=StreamId(given.account), amount=given.amount)
            metadata = actor_metadata(principal_of(request))
            result = await executor.execute(command, metadata=metadata)
            return JSONResponse({"versions": result.stream_versions})

        async def live(request: Request) -> Response:
            return PlainTextResponse("ok")

        async def slow(request: Request) -> Response:
            await asyncio.sleep(self.slow_seconds)
            return PlainTextResponse("late")

        async def stream(request: Request) -> Response:
            async def chunks():  # type: ignore[no-untyped-def]
                yield b"first\n"
                await self.release.wait()
                yield b"last\n"

            return StreamingResponse(chunks(), media_type="text/plain")

        async def whoami(request: Request) -> Response:
            principal = principal_of(request)
            return JSONResponse({"id": principal.id, "scheme": principal.scheme})

        return Starlette(
            routes=[
                Route("/commands/{name}", command, methods=["POST"]),
                Route("/health/live", live),
                Route("/metrics", live),
                Route("/slow", slow),
                Route("/stream", stream),
                Route("/whoami", whoami),
            ]
        )
