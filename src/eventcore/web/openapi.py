"""The service's HTTP contract: an OpenAPI 3.1 document made from its types.

Each accepted command is ``POST /commands/{Name}`` with the command's msgspec JSON
Schema as its body; the event types are in the components, so a client sees what the
log it reads holds. Every error answer is a ``Problem`` (RFC 9457)."""

from __future__ import annotations

from typing import Any

import msgspec

from eventcore._version import __version__
from eventcore.service import Service
from eventcore.web.problems import PROBLEM_MEDIA_TYPE, Problem
from eventcore.web.wire import CommandAccepted, EventPage, StreamView, schema_hook

__all__ = ["openapi"]

_REF = "#/components/schemas/{name}"


def _problem(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": _REF.format(name="Problem")}}},
    }


def _json(description: str, name: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": _REF.format(name=name)}}},
    }


_HEALTH = {
    "description": "the named checks",
    "content": {"application/json": {"schema": {"type": "object"}}},
}


#: What the edge answers on any operation before it runs (``eventcore.web.security``):
#: no or a bad token, a request over a limit, no answer in time.
_EDGE = {
    "401": "no token, or one that is not valid",
    "408": "the body arrived too slowly",
    "413": "the body is too large",
    "431": "too many or too large headers",
    "504": "no answer within the request deadline",
}


def _with_edge(operation: dict[str, Any], *, open_path: bool = False) -> dict[str, Any]:
    responses = operation["responses"]
    for status, description in _EDGE.items():
        if status == "401" and open_path:
            continue
        responses.setdefault(status, _problem(description))
    if open_path:
        operation["security"] = []
    return operation


def openapi(service: Service) -> dict[str, Any]:
    """The OpenAPI document of ``service``'s HTTP face."""
    commands = dict(service.command_types)
    events = list(service.events)
    types: list[Any] = [
        *commands.values(),
        *events,
        CommandAccepted,
        EventPage,
        StreamView,
        Problem,
    ]
    _, components = msgspec.json.schema_components(
        types, ref_template=_REF, schema_hook=schema_hook
    )
    paths: dict[str, Any] = {}
    for name, command in commands.items():
        paths[f"/commands/{name}"] = {
            "post": {
                "operationId": f"command_{name}",
                "summary": (command.__doc__ or name).strip().splitlines()[0],
                "tags": ["commands"],
                "parameters": [
                    {
                        "name": "Idempotency-Key",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "string", "minLength": 1, "maxLength": 200},
                        "description": "The same key twice writes once.",
                    }
                ],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {"$ref": _REF.format(name=name)}}},
                },
                "responses": {
                    "200": _json("the command took effect", "CommandAccepted"),
                    "403": _problem("the caller may not send this command"),
                    "404": _problem("no such command"),
                    "409": _problem("rejected by a business rule, or conflicts outlasted retries"),
                    "413": _problem("the body is too large"),
                    "422": _problem("the body is not a valid command"),
                    "503": _problem("the store or bus is unavailable, or the service is draining"),
                    "504": _problem("the command ran out of time"),
                },
            }
        }
    paths["/streams/{stream_id}"] = {
        "get": {
            "operationId": "read_stream",
            "tags": ["reads"],
            "parameters": [
                {
                    "name": "stream_id",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
                },
                {
                    "name": "from",
                    "in": "query",
                    "description": "the first version to return",
                    "schema": {"type": "integer", "minimum": 1, "maximum": 2**63 - 1},
                },
                {
                    "name": "limit",
                    "in": "query",
                    "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
                },
            ],
            "responses": {
                "200": _json("a page of the stream's events", "StreamView"),
                "404": _problem("no such stream"),
                "422": _problem("not a valid stream id"),
                "503": _problem("the store is unavailable, or the service is draining"),
            },
        }
    }
    paths["/events"] = {
        "get": {
            "operationId": "read_events",
            "tags": ["reads"],
            "parameters": [
                {
                    "name": "after",
                    "in": "query",
                    "schema": {"type": "integer", "minimum": 0, "maximum": 2**63 - 1},
                },
                {
                    "name": "limit",
                    "in": "query",
                    "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
                },
                {
                    "name": "types",
                    "in": "query",
                    "description": "event types, comma-separated",
                    "schema": {"type": "string"},
                },
            ],
            "responses": {
                "200": _json("a page of the global log", "EventPage"),
                "422": _problem("a bad parameter"),
                "503": _problem("the store is unavailable, or the service is draining"),
            },
        }
    }
    for path, ok in (
        ("/health/live", "the process is up"),
        ("/health/ready", "every check passed"),
        ("/status", "what every worker has done"),
    ):
        responses: dict[str, Any] = {"200": {**_HEALTH, "description": ok}}
        if path == "/health/ready":
            responses["503"] = {**_HEALTH, "description": "a check failed, or draining"}
        paths[path] = {"get": {"tags": ["operations"], "responses": responses}}
    for path, item in paths.items():
        for operation in item.values():
            _with_edge(operation, open_path=path == "/health/live")
    return {
        "openapi": "3.1.0",
        "info": {
            "title": service.name,
            "version": service.version,
            "description": service.description
            or f"The HTTP face of service {service.name} (eventcore {__version__}).",
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "an API key, or a JWT (docs/guides/security.md)",
                }
            },
        },
        "security": [{"bearer": []}],
    }
