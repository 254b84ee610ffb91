"""One call puts an HTTP app behind eventcore's edge security: ``secure(app, settings)``.

::

    settings = SecuritySettings.from_env(dev=args.dev, authorize=allow_roles({...}))
    app = secure(Starlette(routes=...), settings)

The order is fixed here so that no face gets it wrong: authentication and authorisation
first (a caller who proves nothing gets nothing read), then the limits on headers, body
and time, then the app. A Starlette app can take the same pieces as middleware instead —
``Middleware(AuthMiddleware, settings=s.auth)`` before ``Middleware(LimitsMiddleware,
limits=s.limits)`` in its list (the first listed is the outermost).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from starlette.types import ASGIApp

from eventcore.web.auth import AuthMiddleware, Authorizer, AuthSettings
from eventcore.web.limits import Limits, LimitsMiddleware

__all__ = ["SecuritySettings", "secure"]


@dataclass(frozen=True)
class SecuritySettings:
    """Who may call (``auth``) and what a request may cost (``limits``)."""

    auth: AuthSettings
    limits: Limits = field(default_factory=Limits)

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        dev: bool = False,
        authorize: Authorizer | None = None,
    ) -> SecuritySettings:
        """Both halves from ``EVENTCORE_*`` variables (``AuthSettings.from_env``,
        ``Limits.from_env``). Outside ``dev``, a configuration with no key to check
        tokens with is ``InvalidSettings``: authentication is never off by accident."""
        return cls(
            auth=AuthSettings.from_env(environ, dev=dev, authorize=authorize),
            limits=Limits.from_env(environ),
        )


def secure(app: ASGIApp, settings: SecuritySettings) -> ASGIApp:
    """``app`` behind authentication, authorisation and request limits (see the module)."""
    return AuthMiddleware(LimitsMiddleware(app, settings.limits), settings.auth)
