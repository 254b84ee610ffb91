"""The HTTP face of a service (docs/guides/serving.md): ``create_app(service)`` and
``serve(service, host=, port=)``, which ``eventcore serve`` runs. Needs the ``runtime``
extra (Starlette, uvicorn).

Security is middleware: ``create_app(service, middleware=[...])`` and
``serve(..., middleware=[...])`` wrap every route with it, outermost first;
``security_middleware(settings)`` is eventcore's own (``eventcore.web.security``:
authentication, per-command authorisation, request limits), which ``eventcore serve``
puts in front unless ``--dev``. The authenticated principal is the ``actor`` of the
events a command writes."""

from eventcore.web.app import create_app
from eventcore.web.asyncapi import asyncapi
from eventcore.web.openapi import openapi
from eventcore.web.problems import PROBLEM_BASE, PROBLEM_MEDIA_TYPE, Problem
from eventcore.web.server import security_middleware, serve

__all__ = [
    "PROBLEM_BASE",
    "PROBLEM_MEDIA_TYPE",
    "Problem",
    "asyncapi",
    "create_app",
    "openapi",
    "security_middleware",
    "serve",
]
