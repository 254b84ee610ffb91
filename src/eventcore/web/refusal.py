"""Refusals sent from ASGI middleware, as RFC 9457 problem details.

The security middleware answers before any endpoint runs, so it writes the response
itself: ``application/problem+json`` with a stable ``type`` per refusal under
``https://eventcore.dev/problems/`` (the base every eventcore HTTP error uses).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import msgspec
from starlette.types import Send

__all__ = ["PROBLEM_BASE", "PROBLEM_MEDIA_TYPE", "Refusal", "send_refusal"]

PROBLEM_BASE: Final = "https://eventcore.dev/problems/"
PROBLEM_MEDIA_TYPE: Final = "application/problem+json"


class Refusal(msgspec.Struct, frozen=True, kw_only=True):
    """One refusal: its ``slug`` (the end of its ``type``), title and status."""

    slug: str
    title: str
    status: int


class _Body(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    type: str
    title: str
    status: int
    detail: str = ""
    instance: str = ""


async def send_refusal(
    send: Send,
    refusal: Refusal,
    detail: str,
    *,
    instance: str = "",
    headers: Sequence[tuple[str, str]] = (),
    close: bool = False,
) -> None:
    """Send ``refusal`` as a complete response; ``close`` asks the client to drop the
    connection (a body left unread must not be taken for the next request)."""
    body = msgspec.json.encode(
        _Body(
            type=PROBLEM_BASE + refusal.slug,
            title=refusal.title,
            status=refusal.status,
            detail=detail,
            instance=instance,
        )
    )
    raw_headers = [
        (b"content-type", PROBLEM_MEDIA_TYPE.encode()),
        (b"content-length", str(len(body)).encode()),
        *((name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers),
    ]
    if close:
        raw_headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": refusal.status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})
