"""Connecting to NATS with the credentials a URL carries, for the bus and the registry alike.

A NATS URL names the server and how to prove who we are:

* ``nats://user:password@host:4222`` — user and password (nats-py reads them from the URL);
* ``nats://TOKEN@host:4222`` — a token;
* ``?creds=/path/app.creds`` — a credentials file (user JWT and NKey seed; needs the
  ``nkeys`` package);
* ``tls://host:4222`` — TLS required; ``?tls_ca=``, ``?tls_cert=`` with ``?tls_key=``
  (client certificate) and ``?tls_hostname=`` (the name to check the server's
  certificate against) set it up; any of them on ``nats://`` asks for TLS too.

Files are checked before connecting (a missing one is ``InvalidUrl``). A server that
refuses the credentials is ``CredentialsRefused``, one that cannot be reached
``BusUnavailable``; neither message holds the password or token (``redact``).
"""

from __future__ import annotations

import asyncio
import os
import ssl
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, Final

import nats
import nats.errors
from nats.aio.client import Client

from eventcore.errors import BusUnavailable, CredentialsRefused, InvalidUrl, MissingDependency

__all__ = ["CONNECTION_OPTIONS", "connect", "connection_settings"]

#: The query options this module reads; a URL type lets them through to ``connect``.
CONNECTION_OPTIONS: Final = frozenset({"creds", "tls_ca", "tls_cert", "tls_key", "tls_hostname"})

# What the server says (nats-py passes it on as a plain ``nats.errors.Error`` with no code,
# so the text is all there is) when it will not take the credentials, or wants some.
_REFUSALS: Final = (
    "authorization violation",
    "authentication timeout",
    "user authentication expired",
    "user authentication revoked",
    "account authentication expired",
)


def connection_settings(url: str, options: Mapping[str, str]) -> dict[str, Any]:
    """The keyword arguments of ``nats.connect`` for ``url`` (its query already parsed
    into ``options``): the server without the query, and the credentials and TLS
    context the options ask for. Checks that every file named exists."""
    server = url.partition("?")[0]
    settings: dict[str, Any] = {"servers": [server]}
    creds = options.get("creds")
    if creds is not None:
        settings["user_credentials"] = _readable(url, "creds", creds)
    tls_ca, tls_cert, tls_key = (options.get(name) for name in ("tls_ca", "tls_cert", "tls_key"))
    if (tls_cert is None) != (tls_key is None):
        raise InvalidUrl(url, "tls_cert and tls_key go together (a client certificate and its key)")
    if tls_ca is not None or tls_cert is not None:
        context = ssl.create_default_context(
            cafile=_readable(url, "tls_ca", tls_ca) if tls_ca is not None else None
        )
        if tls_cert is not None and tls_key is not None:
            try:
                context.load_cert_chain(
                    _readable(url, "tls_cert", tls_cert), _readable(url, "tls_key", tls_key)
                )
            except ssl.SSLError as error:
                raise InvalidUrl(
                    url, f"the client certificate or key is unusable: {error}"
                ) from None
        settings["tls"] = context
    if "tls_hostname" in options:
        settings["tls_hostname"] = options["tls_hostname"]
    return settings


async def connect(
    url: str,
    options: Mapping[str, str],
    *,
    where: str,
    give_up_after: float,
    unavailable: Callable[[str], Exception] = BusUnavailable,
    **extra: Any,
) -> Client:
    """A connection to the NATS server ``url`` names, with its credentials; ``where`` (the
    server's host and port) is what errors show. A server that cannot be reached is
    ``unavailable(message)`` (the registry passes its own error); ``extra`` goes to
    ``nats.connect`` as is (reconnection policy, name)."""
    settings = connection_settings(url, options)
    # nats-py reports why each try failed to this callback, and then raises only "no
    # servers"; it stays the connection's callback, so it keeps only the latest few.
    seen: deque[Exception] = deque(maxlen=4)

    async def remember(error: Exception) -> None:
        seen.append(error)

    try:
        async with asyncio.timeout(give_up_after):
            return await nats.connect(**settings, **extra, error_cb=remember)
    except ImportError as error:
        # A .creds file needs the nkeys package, which nats-py imports only then.
        raise MissingDependency.of(error, "NATS credentials files") from error
    except (TimeoutError, OSError, nats.errors.Error) as error:
        for cause in [error, *reversed(seen)]:
            said = str(cause).lower()
            if any(refusal in said for refusal in _REFUSALS):
                raise CredentialsRefused("NATS", where, str(cause)) from error
        raise unavailable(f"cannot reach NATS at {where}: {error!r}") from error


def _readable(url: str, option: str, path: str) -> str:
    if not os.path.isfile(path) or not os.access(path, os.R_OK):
        raise InvalidUrl(url, f"{option}={path!r} is not a readable file")
    return path
