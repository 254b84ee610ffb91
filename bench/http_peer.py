"""Workload n's peer: the same endpoint as a plain Starlette app over the ``eventsourcing``
library (its SQLite recorder, WAL, synchronous=FULL), served by uvicorn.

``POST /commands/Register`` with ``{"user": …, "name": …}`` saves a new aggregate (one
event); a user registered already is 409, as on the eventcore side. The library is
synchronous, so the endpoint is a plain function that Starlette runs in its thread pool.
The application is configured from the environment (``PERSISTENCE_MODULE``, …) as
``eventsourcing`` is.
"""

from __future__ import annotations

import json
import uuid

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event
from eventsourcing.persistence import IntegrityError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

__all__ = ["app"]


class User(Aggregate):
    @event("Registered")
    def __init__(self, user: str, name: str) -> None:
        self.user = user
        self.name = name

    @staticmethod
    def create_id(user: str, name: str) -> uuid.UUID:
        # One id per user name, so that registering a name twice is a conflict.
        return uuid.uuid5(uuid.NAMESPACE_URL, user)


class Signup(Application):
    pass


signup = Signup()


def register(request: Request) -> JSONResponse:
    # Starlette runs a plain function in its thread pool; the body was read already.
    body = json.loads(request.state.body)
    user = User(user=body["user"], name=body["name"])
    try:
        signup.save(user)
    except IntegrityError:
        return JSONResponse({"error": "registered already"}, status_code=409)
    return JSONResponse({"id": str(user.id), "version": user.version})


async def read_body_then_register(request: Request) -> JSONResponse:
    request.state.body = await request.body()
    return await run_in_threadpool(register, request)


async def health(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ready"})


app = Starlette(
    routes=[
        Route("/commands/Register", read_body_then_register, methods=["POST"]),
        Route("/health/ready", health, methods=["GET"]),
    ]
)
