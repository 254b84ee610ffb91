"""Registry URLs (``open_registry`` opens the registry one names).

* ``memory://`` — in-process; every ``open_registry("memory://")`` is a new, empty one.
* ``sqlite:///abs/path/registry.db`` (or ``sqlite://relative/registry.db``) — embedded:
  one file shared by every process on the machine.
* ``nats://host:port`` — a NATS JetStream key-value bucket, for services on several
  machines. Option ``namespace`` (default ``eventcore``): the bucket is
  ``{namespace}_registry``, so several systems (or test runs) can share one server.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final
from urllib.parse import urlsplit

import msgspec

from eventcore.errors import InvalidName, InvalidUrl
from eventcore.messaging.names import check_name
from eventcore.store.url import split_url

__all__ = ["RegistryUrl", "redacted"]

_SCHEMES: Final = {"memory": "memory", "sqlite": "sqlite", "nats": "nats"}
_OPTIONS: Final = frozenset({"namespace"})


class RegistryUrl(msgspec.Struct, frozen=True):
    raw: str
    backend: str
    #: The file (sqlite) or ``host:port`` (nats); empty for memory.
    location: str
    options: Mapping[str, str]

    @classmethod
    def parse(cls, url: str) -> RegistryUrl:
        """The parsed URL, or ``InvalidUrl`` saying what is wrong with it (showing the
        URL without its user name and password)."""
        try:
            return cls._parse(url)
        except InvalidUrl as error:
            raise InvalidUrl(redacted(url), error.reason) from None

    @classmethod
    def _parse(cls, url: str) -> RegistryUrl:
        backend, location, options = split_url(
            url, _SCHEMES, example="sqlite:///tmp/registry.db", noun="registry scheme"
        )
        unknown = sorted(set(options) - _OPTIONS)
        if unknown:
            known = ", ".join(sorted(_OPTIONS))
            raise InvalidUrl(url, f"unknown option(s) {', '.join(unknown)}; known: {known}")
        if "namespace" in options:
            if backend != "nats":
                raise InvalidUrl(url, "only nats:// takes a namespace")
            try:
                check_name("namespace", options["namespace"])
            except InvalidName as error:
                raise InvalidUrl(url, error.reason) from None
        if backend == "nats":
            try:
                parts = urlsplit(url)
                port = parts.port
            except ValueError as error:
                raise InvalidUrl(url, f"malformed host or port: {error}") from None
            if not parts.hostname:
                raise InvalidUrl(url, "no host; e.g. nats://127.0.0.1:4222")
            location = f"{parts.hostname}:{port or 4222}"
        return cls(raw=url, backend=backend, location=location, options=options)

    @property
    def namespace(self) -> str:
        return self.options.get("namespace", "eventcore")


def redacted(url: object) -> str:
    """``url`` with any user name and password (``nats://user:secret@host``) shown as
    ``***``, for messages."""
    text = str(url)
    scheme, separator, rest = text.partition("://")
    if not separator:
        return text
    # Up to the query: a password may hold a "/" its writer forgot to escape.
    before_query = rest.partition("?")[0].partition("#")[0]
    at = before_query.rfind("@")
    if at < 0:
        return text
    return f"{scheme}://***@{rest[at + 1 :]}"
