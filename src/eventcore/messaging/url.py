"""Bus URLs (``open_bus`` in ``eventcore.messaging`` opens the bus one names).

* ``memory://`` — in-process; every ``open_bus("memory://")`` is a new, empty bus.
* ``sqlite:///abs/path/bus.db`` (or ``sqlite://relative/bus.db``) — the embedded
  default, one file shared by every process on the machine.
* ``nats://host:port`` — NATS JetStream; ``tls://host:port`` requires TLS. Credentials
  travel in the URL: ``nats://user:password@host``, ``nats://TOKEN@host``,
  ``?creds=/path/app.creds``, and ``?tls_ca=``, ``?tls_cert=`` + ``?tls_key=``,
  ``?tls_hostname=`` for TLS. They never show: ``repr`` and ``str`` of a ``BusUrl`` and
  every error that quotes one mask them (``eventcore.redaction.redact``).

Options (query string): ``partitions`` (per topic, default 8; a topic keeps the count
it was created with); for NATS, ``namespace`` (default ``eventcore``): the prefix of
every JetStream stream and key-value bucket the bus creates, so several systems (or
test runs) can share one server without seeing each other.
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from typing import Final

import msgspec

from eventcore._nats.url import CONNECTION_OPTIONS, server_location
from eventcore._nats.url import SCHEMES as NATS_SCHEMES
from eventcore.errors import InvalidName, InvalidUrl
from eventcore.messaging.bus import DEFAULT_PARTITIONS
from eventcore.messaging.names import check_name
from eventcore.redaction import redact
from eventcore.store.url import split_url

__all__ = ["BusUrl", "split_backend_url"]

#: The schemes of a bus or registry URL, and the backend each names.
_SCHEMES: Final = {"memory": "memory", "sqlite": "sqlite", **NATS_SCHEMES}
_OPTIONS: Final = frozenset({"partitions", "namespace"})
_MAX_PARTITIONS: Final = 256


def split_backend_url(
    url: str, known: Set[str], *, example: str, noun: str
) -> tuple[str, str, dict[str, str]]:
    """``split_url`` for the URLs of a bus and of a registry, which name the same
    backends (``memory://``, ``sqlite://``, ``nats://`` or ``tls://``) → (backend,
    location, options). ``known`` are the options the URL type reads; ``namespace``
    among them is for NATS only, which also takes the connection options (credentials
    and TLS files). A NATS location is the server's ``host:port``."""
    backend, location, options = split_url(url, _SCHEMES, example=example, noun=noun)
    allowed = known | CONNECTION_OPTIONS if backend == "nats" else known
    unknown = sorted(set(options) - allowed)
    if unknown:
        listed = ", ".join(sorted(allowed))
        raise InvalidUrl(url, f"unknown option(s) {', '.join(unknown)}; known: {listed}")
    if "namespace" in options:
        if backend != "nats":
            raise InvalidUrl(url, "only nats:// takes a namespace")
        try:
            check_name("namespace", options["namespace"])
        except InvalidName as error:
            raise InvalidUrl(url, error.reason) from None
    if backend == "nats":
        location = server_location(url)
    return backend, location, options


class BusUrl(msgspec.Struct, frozen=True):
    raw: str
    backend: str
    #: The file (sqlite) or ``host:port`` (nats); empty for memory.
    location: str
    options: Mapping[str, str]

    @classmethod
    def parse(cls, url: str) -> BusUrl:
        backend, location, options = split_backend_url(
            url, _OPTIONS, example="sqlite:///tmp/bus.db", noun="bus scheme"
        )
        parsed = cls(raw=url, backend=backend, location=location, options=options)
        parsed.partitions  # noqa: B018 -- validates the option now, not at first use
        return parsed

    def __repr__(self) -> str:
        return f"BusUrl({redact(self.raw)!r})"

    def __str__(self) -> str:
        return redact(self.raw)

    @property
    def partitions(self) -> int:
        raw = self.options.get("partitions")
        if raw is None:
            return DEFAULT_PARTITIONS
        if not raw.isdigit() or not 1 <= int(raw) <= _MAX_PARTITIONS:
            raise InvalidUrl(
                self.raw, f"partitions must be a whole number from 1 to {_MAX_PARTITIONS}"
            )
        return int(raw)

    @property
    def namespace(self) -> str:
        return self.options.get("namespace", "eventcore")
