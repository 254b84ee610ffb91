"""Serving a service over HTTP under uvicorn, with the shutdown that loses nothing.

``serve(service, host, port)`` starts the service, serves its app, and on SIGTERM or
SIGINT (or ``stopping.set()``):

1. closes the service's intake: new commands and reads get 503 (``draining``), probes
   still answer, and readiness fails so a balancer stops sending;
2. waits (up to the service's grace) for admitted commands to finish;
3. stops uvicorn: no new connections, responses in hand are sent;
4. closes the service: workers stop, the relay publishes everything committed, the
   instance deregisters, the store and bus close.

uvicorn's own signal handling is replaced by this order: left to itself it would stop
listening first and let the service keep working unseen.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import signal
import socket
from collections.abc import Callable, Iterator, Sequence

import uvicorn
from starlette.middleware import Middleware

from eventcore.service import InvalidService, Service
from eventcore.web.app import create_app
from eventcore.web.auth import AuthMiddleware
from eventcore.web.limits import LimitsMiddleware
from eventcore.web.security import SecuritySettings

__all__ = ["security_middleware", "serve"]

logger = logging.getLogger("eventcore.web")


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.listening = asyncio.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().startup(sockets)
        except SystemExit:
            # uvicorn leaves by SystemExit when it cannot listen (having logged why); in
            # a task that would escape the event loop itself. Stop serving instead: the
            # caller sees ``serve()`` end without ``listening`` set.
            self.should_exit = True
            return
        if self.started:
            self.listening.set()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # Signals are ours (see the module docs); uvicorn only stops when told.
        yield


async def serve(
    service: Service,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    middleware: Sequence[Middleware] = (),
    stopping: asyncio.Event | None = None,
    on_listening: Callable[[str, int], None] | None = None,
    on_ready: Callable[[], None] | None = None,
    log_level: str = "warning",
) -> None:
    """Run ``service`` with its HTTP face until a signal (or ``stopping``), then drain."""
    stopping = stopping or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stopping.set)
    service.address = f"http://{host}:{port}"
    app = create_app(service, middleware=middleware)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        lifespan="off",
        log_level=log_level,
        access_log=False,
        # Responses in hand when uvicorn stops get this long; the drain before it
        # already waited for the service's commands.
        timeout_graceful_shutdown=max(math.ceil(service.grace), 1),
    )
    server = _Server(config)
    try:
        # Registered only once listening: discovery must give the address it listens on.
        await service.start(register=False)
        serving = asyncio.create_task(server.serve())
        listening = asyncio.create_task(_listening(server))
        waiting = asyncio.create_task(stopping.wait())
        await asyncio.wait({serving, listening}, return_when=asyncio.FIRST_COMPLETED)
        if not listening.done():
            listening.cancel()
            waiting.cancel()
            await serving
            raise InvalidService(f"could not listen on {host}:{port}")
        bound_port = listening.result()
        service.address = f"http://{host}:{bound_port}"
        if on_listening is not None:
            on_listening(host, bound_port)
        await service.register()
        readying = asyncio.create_task(_when_ready(service, on_ready))
        await asyncio.wait({serving, waiting}, return_when=asyncio.FIRST_COMPLETED)
        readying.cancel()
        await asyncio.gather(readying, return_exceptions=True)
        await service.drain()
        server.should_exit = True
        waiting.cancel()
        await serving
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
        await service.aclose()


def security_middleware(settings: SecuritySettings) -> list[Middleware]:
    """eventcore's edge security as middleware for ``create_app``/``serve``: who may
    call first, then what a request may cost (the order ``secure`` fixes)."""
    return [
        Middleware(AuthMiddleware, settings=settings.auth),
        Middleware(LimitsMiddleware, limits=settings.limits),
    ]


async def _when_ready(service: Service, on_ready: Callable[[], None] | None) -> None:
    await service.ready()
    if on_ready is not None:
        on_ready()


async def _listening(server: _Server) -> int:
    """The port ``server`` listens on, once it does."""
    await server.listening.wait()
    for listener in server.servers:
        for sock in listener.sockets:
            return int(sock.getsockname()[1])
    return 0
