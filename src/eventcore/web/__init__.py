"""The HTTP face of a service (docs/guides/serving.md): ``create_app(service)`` and
``serve(service, host=, port=)``, which ``eventcore serve`` runs. Needs the ``runtime``
extra (Starlette, uvicorn).

Security plugs in as middleware: ``create_app(service, middleware=[...])`` and
``serve(..., middleware=[...])`` wrap every route with it, outermost first. An
authentication middleware puts the principal's name in ``scope[PRINCIPAL]``; it
becomes the ``actor`` of the events a command writes."""

from eventcore.web.app import PRINCIPAL, create_app
from eventcore.web.asyncapi import asyncapi
from eventcore.web.openapi import openapi
from eventcore.web.problems import PROBLEM_BASE, PROBLEM_TYPE, Problem
from eventcore.web.server import serve

__all__ = [
    "PRINCIPAL",
    "PROBLEM_BASE",
    "PROBLEM_TYPE",
    "Problem",
    "asyncapi",
    "create_app",
    "openapi",
    "serve",
]
