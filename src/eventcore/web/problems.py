"""Errors as RFC 9457 problem details (``application/problem+json``).

Every error class a caller can act on has a stable ``type`` URI under ``PROBLEM_BASE``
and one status: a client branches on ``type``, never on ``detail`` text. An error not
listed here is a bug; it answers 500 with a generic body (its text may hold anything)
and is logged.
"""

from __future__ import annotations

import logging

import msgspec
from starlette.responses import Response

from eventcore.errors import (
    BusClosed,
    BusUnavailable,
    CommandRejected,
    CommandTimeout,
    ConcurrencyConflict,
    InvalidInput,
    NotFound,
    RetriesExhausted,
    StoreClosed,
    StoreUnavailable,
)
from eventcore.service import ServiceDraining, UnknownCommand
from eventcore.web.refusal import PROBLEM_BASE, PROBLEM_MEDIA_TYPE

__all__ = ["PROBLEM_BASE", "PROBLEM_MEDIA_TYPE", "Problem", "problem", "problem_of"]

logger = logging.getLogger("eventcore.web")


class Problem(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    type: str
    title: str
    status: int
    detail: str = ""
    instance: str = ""


#: (error class, slug, title, status), most specific first.
_MAPPING: tuple[tuple[type[BaseException], str, str, int], ...] = (
    (UnknownCommand, "unknown-command", "Unknown command", 404),
    (NotFound, "not-found", "Not found", 404),
    (InvalidInput, "invalid-input", "Invalid input", 422),
    (msgspec.ValidationError, "invalid-input", "Invalid input", 422),
    (msgspec.DecodeError, "invalid-input", "Invalid input", 422),
    (CommandRejected, "command-rejected", "Command rejected", 409),
    (RetriesExhausted, "conflict", "Conflict after retries", 409),
    (ConcurrencyConflict, "conflict", "Conflict after retries", 409),
    (CommandTimeout, "command-timeout", "Command timed out", 504),
    (ServiceDraining, "draining", "Service draining", 503),
    (StoreUnavailable, "unavailable", "Dependency unavailable", 503),
    (StoreClosed, "unavailable", "Dependency unavailable", 503),
    (BusUnavailable, "unavailable", "Dependency unavailable", 503),
    (BusClosed, "unavailable", "Dependency unavailable", 503),
)


def problem(slug: str, title: str, status: int, detail: str = "", instance: str = "") -> Response:
    body = Problem(
        type=PROBLEM_BASE + slug, title=title, status=status, detail=detail, instance=instance
    )
    headers = {"Retry-After": "1"} if status == 503 else None
    return Response(
        msgspec.json.encode(body),
        status_code=status,
        media_type=PROBLEM_MEDIA_TYPE,
        headers=headers,
    )


def problem_of(error: BaseException, instance: str = "") -> Response:
    """The problem response for ``error``."""
    for kind, slug, title, status in _MAPPING:
        if isinstance(error, kind):
            # A backend's own message may name its URL (and a password in it).
            detail = "the store or bus is unavailable" if slug == "unavailable" else str(error)
            return problem(slug, title, status, detail, instance)
    logger.error("unexpected error answering %s", instance, exc_info=error)
    return problem("internal", "Internal error", 500, "", instance)
