"""Registry URLs (``open_registry`` opens the registry one names).

* ``memory://`` — in-process; every ``open_registry("memory://")`` is a new, empty one.
* ``sqlite:///abs/path/registry.db`` (or ``sqlite://relative/registry.db``) — embedded:
  one file shared by every process on the machine.
* ``nats://host:port`` — a NATS JetStream key-value bucket, for services on several
  machines; ``tls://host:port`` requires TLS. Option ``namespace`` (default
  ``eventcore``): the bucket is ``{namespace}_registry``, so several systems (or test
  runs) can share one server.

A NATS registry URL carries credentials as a bus URL does, and is read by the same code
(``eventcore.messaging.url``, ``eventcore._nats.connect``): ``nats://user:password@host``,
``nats://TOKEN@host``, ``?creds=/path/app.creds``, and ``?tls_ca=``, ``?tls_cert=`` +
``?tls_key=``, ``?tls_hostname=``. They never show: ``repr`` and ``str`` of a
``RegistryUrl`` and every error that quotes one mask them (``eventcore.redaction``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import msgspec

from eventcore.messaging.url import split_backend_url
from eventcore.redaction import redact

__all__ = ["RegistryUrl"]

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
        URL with its credentials masked)."""
        backend, location, options = split_backend_url(
            url, _OPTIONS, example="sqlite:///tmp/registry.db", noun="registry scheme"
        )
        return cls(raw=url, backend=backend, location=location, options=options)

    def __repr__(self) -> str:
        return f"RegistryUrl({redact(self.raw)!r})"

    def __str__(self) -> str:
        return redact(self.raw)

    @property
    def namespace(self) -> str:
        return self.options.get("namespace", "eventcore")
