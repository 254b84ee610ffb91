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

from collections.abc import Mapping
from urllib.parse import urlsplit

import msgspec

from eventcore.errors import InvalidName, InvalidUrl
from eventcore.messaging.bus import DEFAULT_PARTITIONS
from eventcore.messaging.names import check_name
from eventcore.redaction import redact
from eventcore.store.url import split_url

__all__ = ["BusUrl"]

_SCHEMES = {"memory": "memory", "sqlite": "sqlite", "nats": "nats", "tls": "nats"}
_OPTIONS = {"partitions", "namespace"}
#: What nats-py is told about credentials and TLS (``eventcore._nats.connect``).
_NATS_OPTIONS = {"creds", "tls_ca", "tls_cert", "tls_key", "tls_hostname"}
_MAX_PARTITIONS = 256


class BusUrl(msgspec.Struct, frozen=True):
    raw: str
    backend: str
    #: The file (sqlite) or ``host:port`` (nats); empty for memory.
    location: str
    options: Mapping[str, str]

    @classmethod
    def parse(cls, url: str) -> BusUrl:
        backend, location, options = split_url(
            url, _SCHEMES, example="sqlite:///tmp/bus.db", noun="bus scheme"
        )
        allowed = _OPTIONS | _NATS_OPTIONS if backend == "nats" else _OPTIONS
        unknown = sorted(set(options) - allowed)
        if unknown:
            known = ", ".join(sorted(allowed))
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
