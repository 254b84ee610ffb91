"""Store URLs: which backend, where, and with which options."""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import parse_qsl, urlsplit

import msgspec

from eventcore.errors import InvalidUrl
from eventcore.redaction import redact

__all__ = ["StoreUrl", "split_url"]

_INTEGER = re.compile(r"-?[0-9]+")

_SCHEMES = {
    "memory": "memory",
    "sqlite": "sqlite",
    "postgresql": "postgres",
    "postgres": "postgres",
}


def split_url(
    url: str, schemes: Mapping[str, str], *, example: str, noun: str = "scheme"
) -> tuple[str, str, dict[str, str]]:
    """``scheme://location?options`` → (backend, location, options), with the checks
    every eventcore URL shares (store and bus alike): a known scheme, a well-formed
    query, a path for ``sqlite``, none for ``memory``. ``example`` is shown in errors."""
    if not isinstance(url, str) or "://" not in url:
        raise InvalidUrl(str(url), f"expected scheme://..., e.g. {example}")
    try:
        url.encode("utf-8")
    except UnicodeEncodeError:
        # Bytes that are not UTF-8 (from argv or the environment) reach us as lone surrogates.
        shown = url.encode("utf-8", "backslashreplace").decode("utf-8")
        raise InvalidUrl(shown, "it is not valid UTF-8") from None
    if not url.isprintable():
        raise InvalidUrl(url, "it holds a control character (a NUL, a newline...)")
    scheme, _, rest = url.partition("://")
    backend = schemes.get(scheme.lower())
    if backend is None:
        known = ", ".join(sorted(f"{name}://" for name in schemes))
        raise InvalidUrl(url, f"unknown {noun} {scheme!r}; known: {known}")
    location, _, query = rest.partition("?")
    try:
        options = dict(parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)))
    except ValueError as error:
        raise InvalidUrl(url, f"malformed query string: {error}") from None
    if backend == "sqlite" and not location:
        raise InvalidUrl(url, f"no file path; e.g. {example}")
    if backend == "memory" and location:
        raise InvalidUrl(url, "memory:// takes no path")
    return backend, location, options


class StoreUrl(msgspec.Struct, frozen=True):
    """A parsed store URL.

    * ``memory://`` — in-process, gone when the process ends.
    * ``sqlite:///abs/path.db`` or ``sqlite://relative/path.db`` — an embedded file;
      options ``synchronous`` (FULL, NORMAL, OFF) and ``max_payload_bytes``.
    * ``postgresql://user:password@host:port/db`` — the scale-out backend; TLS through
      libpq's options (``sslmode``, ``sslrootcert``, ``sslcert``, ``sslkey``,
      ``sslpassword``, ``sslcrl``).

    ``repr`` and ``str`` show the URL with its password masked (``redact``).
    """

    raw: str
    backend: str
    path: str
    options: Mapping[str, str]

    @classmethod
    def parse(cls, url: str) -> StoreUrl:
        backend, location, options = split_url(url, _SCHEMES, example="sqlite:///tmp/events.db")
        if backend == "postgres":
            try:
                parts = urlsplit(url)
                parts.port  # noqa: B018 -- raises ValueError for a port that is not a number
            except ValueError as error:
                raise InvalidUrl(url, f"malformed host or port: {error}") from None
            if not parts.hostname and not parts.path.strip("/"):
                raise InvalidUrl(url, "expected postgresql://user@host:port/database")
        return cls(raw=url, backend=backend, path=location, options=options)

    def __repr__(self) -> str:
        return f"StoreUrl({redact(self.raw)!r})"

    def __str__(self) -> str:
        return redact(self.raw)

    def option(self, name: str, default: str) -> str:
        return self.options.get(name, default)

    def int_option(
        self, name: str, default: int, *, minimum: int = 1, maximum: int = 2**63 - 1
    ) -> int:
        """The option as a whole number from ``minimum`` to ``maximum`` (by default what
        fits the 64 bits the databases keep), or ``default`` when it is not given."""
        text = self.options.get(name)
        if text is None:
            return default
        # Plain digits only: int() would also take " 1", "1_000", "+1" and other scripts' digits.
        if _INTEGER.fullmatch(text) is None:
            raise InvalidUrl(self.raw, f"option {name}={text!r} is not an integer")
        # Past 30 digits a number is out of every range here (and Python refuses int() of
        # thousands of digits), so only its sign matters.
        value = int(text) if len(text) <= 30 else (-(10**30) if text[0] == "-" else 10**30)
        if value < minimum:
            raise InvalidUrl(self.raw, f"option {name} must be at least {minimum}")
        if value > maximum:
            raise InvalidUrl(self.raw, f"option {name} must be at most {maximum}")
        return value

    def reject_unknown_options(self, known: set[str]) -> None:
        unknown = sorted(set(self.options) - known)
        if unknown:
            raise InvalidUrl(
                self.raw,
                f"unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}",
            )
