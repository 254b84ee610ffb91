"""Who is calling: the principal an HTTP request authenticated as, and its place in events.

The authentication middleware (``eventcore.web.auth``) puts one ``Principal`` on every
request it lets through; an endpoint reads it with ``principal_of`` and hands
``actor_metadata(principal)`` to the executor, so every event the command writes names
its ``actor``.
"""

from __future__ import annotations

from typing import Any, Final, Literal

import msgspec
from starlette.requests import HTTPConnection

from eventcore.types import Metadata

__all__ = ["ANONYMOUS", "SCOPE_KEY", "Principal", "Scheme", "actor_metadata", "principal_of"]

#: How a principal proved who it is: an API key, a signed JWT, or nothing (``--dev``,
#: or a path left open by configuration).
Scheme = Literal["api-key", "jwt", "none"]

#: Where the middleware keeps the principal in the ASGI scope.
SCOPE_KEY: Final = "eventcore.principal"


class Principal(msgspec.Struct, frozen=True, kw_only=True):
    """An authenticated caller. ``id`` is the API key's name or the JWT's subject (its
    ``sub`` claim); ``roles`` come from the key's entry or the token's ``roles`` /
    ``scope`` claims, for authorisation hooks to look at."""

    id: str
    scheme: Scheme
    roles: frozenset[str] = frozenset()

    @property
    def actor(self) -> str:
        """What events written for this principal name as their ``actor``."""
        return self.id


#: The principal of a request nobody authenticated (development mode, open paths).
ANONYMOUS: Final = Principal(id="anonymous", scheme="none")


def principal_of(connection: HTTPConnection | dict[str, Any]) -> Principal:
    """The principal the middleware authenticated for this request (a Starlette request,
    a WebSocket, or a raw ASGI scope); ``ANONYMOUS`` where none did."""
    scope = connection.scope if isinstance(connection, HTTPConnection) else connection
    found = scope.get(SCOPE_KEY)
    return found if isinstance(found, Principal) else ANONYMOUS


def actor_metadata(principal: Principal, metadata: Metadata | None = None) -> Metadata:
    """``metadata`` (or empty metadata) with ``actor`` set to the principal's: what a
    command endpoint passes to the executor. An anonymous principal sets no actor."""
    base = metadata if metadata is not None else Metadata()
    if principal.scheme == "none":
        return base
    return base.merged(Metadata(actor=principal.actor))
