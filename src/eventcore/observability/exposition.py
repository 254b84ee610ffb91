"""Serving the metrics: ``metrics_app()`` is an ASGI app to mount at ``/metrics`` in a
service that has an HTTP face; ``serve_metrics(port)`` serves them on a port of their
own, from a thread, for a service that has none (a relay, a subscriber)."""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, make_asgi_app, start_http_server

__all__ = ["MetricsServer", "metrics_app", "serve_metrics"]

#: An ASGI application: (scope, receive, send).
AsgiApp = Callable[
    [
        MutableMapping[str, Any],
        Callable[[], Awaitable[MutableMapping[str, Any]]],
        Callable[[MutableMapping[str, Any]], Awaitable[None]],
    ],
    Awaitable[None],
]


def metrics_app(registry: CollectorRegistry | None = None) -> AsgiApp:
    """An ASGI app answering any GET with the Prometheus text of ``registry`` (by
    default the global one, where ``metrics_hooks()`` keeps its metrics)."""
    app: AsgiApp = make_asgi_app(REGISTRY if registry is None else registry)
    return app


class MetricsServer:
    """The HTTP server ``serve_metrics`` started; ``close()`` stops it (idempotent)."""

    def __init__(self, server: Any, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread
        self._closed = False

    @property
    def port(self) -> int:
        """The port it listens on (the one chosen when asked for port 0)."""
        return int(self._server.server_address[1])

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


def serve_metrics(
    port: int, *, addr: str = "127.0.0.1", registry: CollectorRegistry | None = None
) -> MetricsServer:
    """Serve ``registry``'s metrics over HTTP on ``addr``:``port`` from a daemon thread
    (port 0: any free one, see ``.port``). Only this machine by default: pass
    ``addr="0.0.0.0"`` for a Prometheus elsewhere to scrape it."""
    server, thread = start_http_server(
        port, addr=addr, registry=REGISTRY if registry is None else registry
    )
    return MetricsServer(server, thread)
