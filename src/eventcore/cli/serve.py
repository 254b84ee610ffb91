"""``eventcore serve module:service``: a service as a process of its own, with its HTTP
face (docs/guides/serving.md).

The store, bus and registry come from ``--store``/``--bus``/``--registry`` or
``EVENTCORE_STORE``/``EVENTCORE_BUS``/``EVENTCORE_REGISTRY``, and replace what the
service declares; the address from ``--host``/``--port`` (``EVENTCORE_HOST``,
``EVENTCORE_PORT``). Once listening it prints ``serve: listening on http://HOST:PORT``
(the real port when asked for 0), then ``serve: ready`` once every worker is; on
SIGTERM or SIGINT it drains (see ``eventcore.web.server``), prints ``serve: stopped``
and exits 0. URLs are never printed: they may hold passwords.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

import typer

from eventcore.cli.errors import reported
from eventcore.cli.options import BUS_ENVVAR, ENVVAR, nonempty, url_option
from eventcore.errors import MissingDependency
from eventcore.service import Service, load_service
from eventcore.service.config import DEFAULT_HOST, DEFAULT_PORT, REGISTRY_ENV

if TYPE_CHECKING:
    from starlette.middleware import Middleware

__all__ = ["ServiceSpec", "serve"]

#: The service to run, as ``module:attribute``.
ServiceSpec = Annotated[
    str,
    typer.Argument(
        metavar="MODULE:SERVICE",
        callback=nonempty,
        help="The service, as module:attribute (e.g. shop.payments:service).",
    ),
]


_HOST = re.compile(r"[A-Za-z0-9.:_-]{1,253}")


def _address(value: str) -> str:
    """A host name or IP address; an empty one would listen on every interface."""
    if not _HOST.fullmatch(value):
        raise typer.BadParameter("must be a host name or an IP address")
    return value


def serve(
    spec: ServiceSpec,
    host: Annotated[
        str,
        typer.Option(
            "--host",
            envvar="EVENTCORE_HOST",
            show_envvar=True,
            callback=_address,
            help="Address to listen on.",
        ),
    ] = DEFAULT_HOST,
    port: Annotated[
        int,
        typer.Option(
            "--port",
            envvar="EVENTCORE_PORT",
            show_envvar=True,
            min=0,
            max=65535,
            help="Port to listen on (0: any free one, printed once listening).",
        ),
    ] = DEFAULT_PORT,
    store: Annotated[
        str | None, url_option("--store", ENVVAR, "The service's event store URL.")
    ] = None,
    bus: Annotated[str | None, url_option("--bus", BUS_ENVVAR, "The message bus URL.")] = None,
    registry: Annotated[
        str | None, url_option("--registry", REGISTRY_ENV, "The service registry URL.")
    ] = None,
    dev: Annotated[
        bool,
        typer.Option(
            "--dev",
            envvar="EVENTCORE_DEV",
            show_envvar=True,
            help="Development mode: no authentication, more logs.",
        ),
    ] = False,
) -> None:
    """Run a service with its HTTP face until SIGTERM or SIGINT, then drain and exit 0."""
    with reported():
        service = load_service(spec)
        service.configure(store=store, bus=bus, registry=registry)
        # Checked before anything starts: outside --dev, no key to check tokens with is
        # an error, never a service open to all.
        middleware = _security(service, dev)
        logging.basicConfig(level=logging.INFO if dev else logging.WARNING)
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            runner.run(_serve(service, host, port, middleware, dev))
    print("serve: stopped", flush=True)


async def _serve(
    service: Service, host: str, port: int, middleware: list[Middleware], dev: bool
) -> None:
    from eventcore.web import serve as serve_web

    service.use_default_hooks()

    def listening(bound_host: str, bound_port: int) -> None:
        print(f"serve: listening on http://{bound_host}:{bound_port}", flush=True)

    await serve_web(
        service,
        host=host,
        port=port,
        middleware=middleware,
        on_listening=listening,
        on_ready=lambda: print("serve: ready", flush=True),
        log_level="info" if dev else "warning",
    )


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop when it is installed (the ``runtime`` extra brings it where it
    builds), as uvicorn itself would choose; else asyncio's own."""
    try:
        import uvloop
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def _security(service: Service, dev: bool) -> list[Middleware]:
    """Authentication, the service's authorisation hook and the request limits, from
    ``EVENTCORE_*`` settings (docs/guides/security.md); under ``--dev`` nobody is asked
    for a token, and the limits still hold."""
    try:
        from eventcore.web import security_middleware
        from eventcore.web.security import SecuritySettings
    except ImportError as error:
        raise MissingDependency.of(error, "eventcore serve") from error

    return security_middleware(SecuritySettings.from_env(dev=dev, authorize=service.authorize))
