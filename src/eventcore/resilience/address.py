"""Where a call goes: a service's name, a path on it, and the addresses of its instances.

A caller names the service, not a host: ``http://payments/orders/7`` (the host *is* the
service name) or ``service="payments"`` with the path ``/orders/7``. A resolver turns
the name into instances' base URLs (``http://10.0.0.5:8000``, perhaps with a path
prefix), and the request goes to the base URL followed by the path. The scheme and
port of a call are the instance's, so a service URL carries neither a port nor
credentials; base URLs carry no credentials either (they would show in errors and logs).
"""

from __future__ import annotations

import re
from typing import Final, NamedTuple
from urllib.parse import SplitResult, urlsplit

from eventcore.errors import InvalidName, InvalidUrl

__all__ = ["MAX_SERVICE_LENGTH", "Target", "check_base_url", "check_service"]

MAX_SERVICE_LENGTH: Final = 64
# A host name label (so that it reads as one in http://payments/...), also allowing "_".
_SERVICE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
_SCHEMES: Final = ("http", "https")


class Target(NamedTuple):
    """A call's service and the path (with its query) to ask it for."""

    service: str
    path: str

    @classmethod
    def of(cls, url: str, service: str | None = None) -> Target:
        """``http://payments/orders?id=7``, or the path ``/orders?id=7`` with
        ``service="payments"``. The service name keeps its case."""
        if service is not None:
            check_service(service)
            parts = urlsplit(url)
            if parts.scheme or parts.netloc:
                raise InvalidUrl(
                    url,
                    "with service= given, the URL is a path on that service, like '/orders/7'",
                )
            return cls(service, _path_of(parts))
        parts = urlsplit(url)
        if parts.scheme not in _SCHEMES or not parts.netloc:
            raise InvalidUrl(
                url,
                "expected http://<service>/<path>, or a path with service= given",
            )
        if "@" in parts.netloc:
            raise InvalidUrl(url, "a service URL carries no credentials")
        if ":" in parts.netloc:
            raise InvalidUrl(url, "a service URL has no port: the instance's address gives it")
        try:
            name = check_service(parts.netloc)
        except InvalidName as error:
            raise InvalidUrl(url, f"its host is not a service name: {error.reason}") from None
        return cls(name, _path_of(parts))


def check_service(value: object) -> str:
    """``value`` if it names a service: 1–64 letters, digits, ``-`` and ``_``, starting
    with a letter or digit (a host name label); else InvalidName."""
    if not isinstance(value, str):
        raise InvalidName("service", value, f"expected a string, got {type(value).__name__}")
    if len(value) > MAX_SERVICE_LENGTH:
        raise InvalidName(
            "service",
            value,
            f"it has {len(value)} characters; at most {MAX_SERVICE_LENGTH} are allowed",
        )
    if _SERVICE.fullmatch(value) is None:
        raise InvalidName(
            "service",
            value,
            "it must be letters, digits, '-' and '_', starting with a letter or digit",
        )
    return value


def check_base_url(value: object) -> str:
    """``value`` without a trailing ``/`` if it is an instance's base URL:
    ``http(s)://host[:port][/prefix]``, with no credentials, query or fragment."""
    if not isinstance(value, str):
        raise InvalidUrl(repr(value), f"expected a string, got {type(value).__name__}")
    parts = urlsplit(value)
    if parts.scheme not in _SCHEMES or not parts.hostname:
        raise InvalidUrl(value, "expected http://host:port or https://host:port")
    if "@" in parts.netloc:
        raise InvalidUrl(value, "an instance's address carries no credentials")
    if parts.query or parts.fragment:
        raise InvalidUrl(value, "an instance's address has no query or fragment")
    try:
        parts.port  # noqa: B018 - urlsplit checks the port only when it is read
    except ValueError as error:
        raise InvalidUrl(value, f"its port is not valid: {error}") from None
    return value.rstrip("/")


def _path_of(parts: SplitResult) -> str:
    path = parts.path if parts.path.startswith("/") else "/" + parts.path
    return f"{path}?{parts.query}" if parts.query else path
