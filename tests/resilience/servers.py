"""Real HTTP servers on loopback for the client's tests, run in the test's own loop.

``Instance`` is one instance of a service: a Starlette app on uvicorn that answers
every path with JSON naming itself, and does what the test says: answer with another
status, or hang until released. It counts what it received. ``HangUp`` is a raw TCP
server that reads a request and closes the connection without answering: a connection
broken after the request was sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

METHODS = ["GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE"]


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    body: bytes
    idempotency_key: str | None


class _QuietServer(uvicorn.Server):
    # The test process keeps its own signal handling: uvicorn's would re-raise a
    # captured SIGINT after the server stops.
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class Instance:
    """One instance of a service, answering ``status`` unless told to hang."""

    name: str
    status: int = 200
    hang: bool = False
    received: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._release = asyncio.Event()
        self._hanging = asyncio.Event()
        self._server: _QuietServer | None = None
        self._task: asyncio.Task[None] | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _answer(self, request: Request) -> Response:
        body = await request.body()
        self.received.append(
            Received(request.method, request.url.path, body, request.headers.get("idempotency-key"))
        )
        if self.hang:
            self._hanging.set()
            await self._release.wait()
        answer = {"instance": self.name, "path": request.url.path, "query": request.url.query}
        return JSONResponse(answer, status_code=self.status)

    async def start(self) -> Instance:
        app = Starlette(routes=[Route("/{path:path}", self._answer, methods=METHODS)])
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            app, lifespan="off", log_level="warning", access_log=False, timeout_graceful_shutdown=5
        )
        self._server = _QuietServer(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        while not self._server.started:
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.005)
        return self

    async def stop(self) -> None:
        """Stop listening and close every connection; requests hanging are released."""
        self._release.set()
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            await self._task
            self._server = self._task = None

    def release(self) -> None:
        self._release.set()

    async def hanging(self) -> None:
        """Return once a request is held by ``hang``."""
        await self._hanging.wait()


class HangUp:
    """Reads a request's head, then closes the connection without a word."""

    def __init__(self) -> None:
        self.requests = 0
        self._server: asyncio.Server | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            await reader.readuntil(b"\r\n\r\n")
            self.requests += 1
        writer.close()

    async def start(self) -> HangUp:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
