"""Authentication and authorisation at the HTTP edge, as one ASGI middleware.

Every request but those to an open path must carry ``Authorization: Bearer <token>``,
where the token is a configured API key or a JWT the configured key signed
(``eventcore.web.credentials``). Then:

* no token, a token of another scheme, an unknown key, a JWT expired or signed by
  another key → **401** with ``WWW-Authenticate: Bearer realm=..., error=...``;
* a ``POST`` to a command (``/commands/{Name}``) whose authorisation hook says no →
  **403**; the endpoint never runs, so nothing is written;
* otherwise the request goes on with its ``Principal`` in the scope (``principal_of``),
  which the command endpoint turns into the events' ``actor`` (``actor_metadata``).

Refusals are ``application/problem+json`` (``unauthenticated``, ``forbidden``). Which
paths stay open (by default ``/health/live`` and ``/metrics``) is a setting, as is
development mode (``enabled=False``), where nobody is asked for anything.
"""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from starlette.types import ASGIApp, Receive, Scope, Send

from eventcore.errors import InvalidSettings
from eventcore.web.credentials import ASYMMETRIC_ALGORITHMS, ApiKeys, JwtVerifier, Unauthenticated
from eventcore.web.principal import ANONYMOUS, SCOPE_KEY, Principal
from eventcore.web.refusal import Refusal, send_refusal

__all__ = [
    "DEFAULT_OPEN_PATHS",
    "FORBIDDEN",
    "UNAUTHENTICATED",
    "AuthMiddleware",
    "AuthSettings",
    "Authorizer",
    "allow_roles",
]

logger = logging.getLogger("eventcore.web.auth")

#: ``(principal, command type) -> allowed?``, plain or async.
Authorizer = Callable[[Principal, str], bool | Awaitable[bool]]

DEFAULT_OPEN_PATHS: Final = ("/health/live", "/metrics")
UNAUTHENTICATED: Final = Refusal(slug="unauthenticated", title="Unauthenticated", status=401)
FORBIDDEN: Final = Refusal(slug="forbidden", title="Forbidden", status=403)

_BEARER: Final = "bearer"


@dataclass(frozen=True)
class AuthSettings:
    """Who may call, and what stays open.

    ``open_paths`` are exact paths, or prefixes when they end in ``*`` (``/docs/*``).
    ``authorize`` decides per command type (default: every authenticated principal may
    send every command); ``command_prefix`` is where command endpoints live.
    ``enabled=False`` is development mode: nobody is authenticated or refused."""

    api_keys: ApiKeys = field(default_factory=ApiKeys)
    jwt: JwtVerifier | None = None
    open_paths: Sequence[str] = DEFAULT_OPEN_PATHS
    authorize: Authorizer | None = None
    command_prefix: str = "/commands/"
    realm: str = "eventcore"
    enabled: bool = True

    def __post_init__(self) -> None:
        if self.enabled and not len(self.api_keys) and self.jwt is None:
            raise InvalidSettings(
                "authentication",
                "it is on, but there is no API key and no JWT key to check tokens with: set "
                "EVENTCORE_API_KEYS, EVENTCORE_API_KEYS_FILE, EVENTCORE_JWT_PUBLIC_KEY or "
                "EVENTCORE_JWT_JWKS (or serve with --dev, which turns it off)",
            )
        for path in self.open_paths:
            if not path.startswith("/"):
                raise InvalidSettings("open paths", f"{path!r} does not start with '/'")

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        dev: bool = False,
        authorize: Authorizer | None = None,
    ) -> AuthSettings:
        """Settings from ``EVENTCORE_*`` variables (``os.environ`` by default):

        * ``EVENTCORE_API_KEYS`` — ``name:token[:roles],...``;
        * ``EVENTCORE_API_KEYS_FILE`` — a file of ``name:token[:roles]`` lines;
        * ``EVENTCORE_JWT_PUBLIC_KEY`` — a PEM public key file, or
          ``EVENTCORE_JWT_JWKS`` — a JWKS file;
        * ``EVENTCORE_JWT_ISSUER``, ``EVENTCORE_JWT_AUDIENCE``,
          ``EVENTCORE_JWT_ALGORITHMS`` (comma-separated) — what a token must say;
        * ``EVENTCORE_OPEN_PATHS`` — comma-separated paths left open (replaces the
          default ``/health/live,/metrics``; empty leaves none open).

        ``dev=True`` turns authentication off whatever the variables say.
        """
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        keys = ApiKeys()
        if (inline := get("EVENTCORE_API_KEYS")) is not None:
            keys = ApiKeys.parse(inline, source="EVENTCORE_API_KEYS", separator=",")
        if (key_file := get("EVENTCORE_API_KEYS_FILE")) is not None:
            keys = keys.merged(ApiKeys.from_file(key_file, source="EVENTCORE_API_KEYS_FILE"))
        public_key, jwks = get("EVENTCORE_JWT_PUBLIC_KEY"), get("EVENTCORE_JWT_JWKS")
        if public_key is not None and jwks is not None:
            raise InvalidSettings(
                "EVENTCORE_JWT_PUBLIC_KEY", "give it or EVENTCORE_JWT_JWKS, not both"
            )
        algorithms = get("EVENTCORE_JWT_ALGORITHMS")
        options = {
            "issuer": get("EVENTCORE_JWT_ISSUER"),
            "audience": get("EVENTCORE_JWT_AUDIENCE"),
            "algorithms": (
                tuple(a.strip() for a in algorithms.split(",") if a.strip())
                if algorithms
                else ASYMMETRIC_ALGORITHMS
            ),
        }
        verifier = None
        if public_key is not None:
            verifier = JwtVerifier.from_public_key(public_key, **options)
        elif jwks is not None:
            verifier = JwtVerifier.from_jwks(jwks, **options)
        open_paths: Sequence[str] = DEFAULT_OPEN_PATHS
        if "EVENTCORE_OPEN_PATHS" in env:
            raw = env["EVENTCORE_OPEN_PATHS"]
            open_paths = tuple(p.strip() for p in raw.split(",") if p.strip())
        return cls(
            api_keys=keys,
            jwt=verifier,
            open_paths=open_paths,
            authorize=authorize,
            enabled=not dev,
        )

    def is_open(self, path: str) -> bool:
        return any(
            path.startswith(open_path[:-1]) if open_path.endswith("*") else path == open_path
            for open_path in self.open_paths
        )


def allow_roles(rules: Mapping[str, Sequence[str]], *, default: bool = False) -> Authorizer:
    """An authoriser from a table: command type → the roles any of which may send it.
    A command not in the table is allowed when ``default`` is True, refused otherwise.
    ``"*"`` in a command's roles lets every authenticated principal send it."""
    table = {command: frozenset(roles) for command, roles in rules.items()}

    def allowed(principal: Principal, command_type: str) -> bool:
        roles = table.get(command_type)
        if roles is None:
            return default
        return "*" in roles or bool(roles & principal.roles)

    return allowed


class AuthMiddleware:
    """Authenticates every HTTP and WebSocket request and authorises commands (see the
    module). Mount it outside every other middleware but the header limits, so that a
    caller who proves nothing gets nothing read or run for them."""

    def __init__(self, app: ASGIApp, settings: AuthSettings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        settings = self.settings
        path: str = scope["path"]
        if not settings.enabled or settings.is_open(path):
            scope[SCOPE_KEY] = ANONYMOUS
            await self.app(scope, receive, send)
            return
        try:
            principal = self._authenticate(scope)
        except Unauthenticated as refusal:
            await self._refuse_unauthenticated(scope, send, refusal)
            return
        if scope["type"] == "http" and scope["method"] == "POST":
            command = _command_type(path, settings.command_prefix)
            if command is not None and not await self._allowed(principal, command):
                logger.info("refused command %s to principal %r", command, principal.id)
                await send_refusal(
                    send,
                    FORBIDDEN,
                    f"{principal.id!r} may not send {command}",
                    instance=path,
                    close=True,
                )
                return
        scope[SCOPE_KEY] = principal
        await self.app(scope, receive, send)

    def _authenticate(self, scope: Scope) -> Principal:
        values = [value for name, value in scope["headers"] if name == b"authorization"]
        if not values:
            raise Unauthenticated("no bearer token", error="")
        if len(values) > 1:
            raise Unauthenticated("more than one Authorization header", error="invalid_request")
        scheme, _, token = values[0].decode("latin-1").strip().partition(" ")
        token = token.strip()
        if scheme.lower() != _BEARER or not token:
            raise Unauthenticated("expected 'Authorization: Bearer <token>'", "invalid_request")
        found = self.settings.api_keys.principal(token)
        if found is not None:
            return found
        if self.settings.jwt is not None and token.count(".") == 2:
            return self.settings.jwt.principal(token)
        raise Unauthenticated("the token is not a key this service knows")

    async def _allowed(self, principal: Principal, command: str) -> bool:
        hook = self.settings.authorize
        if hook is None:
            return True
        verdict = hook(principal, command)
        if inspect.isawaitable(verdict):
            verdict = await verdict
        # Anything but a plain True refuses: a hook that returns None by mistake fails closed.
        return verdict is True

    async def _refuse_unauthenticated(
        self, scope: Scope, send: Send, refusal: Unauthenticated
    ) -> None:
        if scope["type"] == "websocket":
            # Before the handshake is accepted, a close is refused as HTTP 403 by servers.
            await send({"type": "websocket.close", "code": 1008, "reason": "unauthenticated"})
            return
        challenge = f'Bearer realm="{self.settings.realm}"'
        if refusal.error:
            description = refusal.reason.replace('"', "'")
            challenge += f', error="{refusal.error}", error_description="{description}"'
        await send_refusal(
            send,
            UNAUTHENTICATED,
            refusal.reason,
            instance=scope["path"],
            headers=[("www-authenticate", challenge)],
            close=True,
        )


def _command_type(path: str, prefix: str) -> str | None:
    if not path.startswith(prefix):
        return None
    # The first segment, so that "/commands/Name/" or "/commands/Name/x" is authorised as
    # Name too, whatever the router makes of it.
    name = path[len(prefix) :].split("/", 1)[0]
    return name or None
