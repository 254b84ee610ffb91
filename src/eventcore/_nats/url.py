"""What a NATS URL may say, for every URL type that names a NATS server (bus, registry).

Kept apart from ``eventcore._nats.connect`` because parsing a URL must not need nats-py:
the schemes that mean NATS, the query options ``connect`` reads (credentials and TLS),
and the server's ``host:port`` that errors show instead of the URL.
"""

from __future__ import annotations

from typing import Final
from urllib.parse import urlsplit

from eventcore.errors import InvalidUrl

__all__ = ["CONNECTION_OPTIONS", "DEFAULT_PORT", "SCHEMES", "server_location"]

#: The schemes that name a NATS server; ``tls://`` requires TLS.
SCHEMES: Final = {"nats": "nats", "tls": "nats"}

#: The query options ``eventcore._nats.connect`` reads: a credentials file and TLS files.
CONNECTION_OPTIONS: Final = frozenset({"creds", "tls_ca", "tls_cert", "tls_key", "tls_hostname"})

DEFAULT_PORT: Final = 4222


def server_location(url: str) -> str:
    """``host:port`` of the server ``url`` names (port 4222 when none is given), or
    ``InvalidUrl``. It holds no credentials, so errors can show it as it is."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise InvalidUrl(url, f"malformed host or port: {error}") from None
    if not parts.hostname:
        raise InvalidUrl(url, "no host; e.g. nats://127.0.0.1:4222")
    return f"{parts.hostname}:{port or DEFAULT_PORT}"
