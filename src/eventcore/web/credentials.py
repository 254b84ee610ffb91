"""Bearer tokens checked: static API keys and JWTs signed by a key the service trusts.

**API keys** are named: ``name:token`` or ``name:token:role role``, one per line in a
file (``#`` starts a comment) or comma-separated in an environment variable. The name
becomes the principal's id (and the events' actor); a token is at least 16 characters.
Only SHA-256 digests of the tokens are kept, and a presented token is found by its
digest, so neither a memory dump nor the time a lookup takes gives a key away.

**JWTs** are verified with one public key (PEM) or a JWKS file (the token's ``kid``
picks the key). The signature, ``exp`` (required), ``nbf``, and — when configured —
``iss`` and ``aud`` are checked; only asymmetric algorithms are accepted (``none`` and
the shared-secret ``HS*`` never are). ``sub`` is the principal's id; ``roles`` (a list)
and ``scope`` (space-separated) give its roles.

A verified JWT is remembered (by its digest, up to ``JWT_CACHE_SIZE`` of them) until
it expires, so a client that sends the same token on every request pays for one
signature check, not one per request.

A token that is none of these raises ``Unauthenticated`` with a reason fit to show the
caller (``WWW-Authenticate``'s ``error_description``) — never the token itself.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import jwt

from eventcore.errors import InvalidSettings
from eventcore.web.principal import Principal

__all__ = [
    "ASYMMETRIC_ALGORITHMS",
    "JWT_CACHE_SIZE",
    "MIN_API_KEY_LENGTH",
    "ApiKeys",
    "JwtVerifier",
    "Unauthenticated",
]

MIN_API_KEY_LENGTH: Final = 16
JWT_CACHE_SIZE: Final = 4096
#: Signature algorithms a public key can verify; the default accepted set.
ASYMMETRIC_ALGORITHMS: Final = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
)


class Unauthenticated(Exception):
    """The request proved no identity; ``reason`` is safe to show the caller, and
    ``error`` is RFC 6750's code (``invalid_token``, or ``invalid_request``)."""

    def __init__(self, reason: str, error: str = "invalid_token") -> None:
        self.reason = reason
        self.error = error
        super().__init__(reason)


class ApiKeys:
    """Named static keys, found by their token's digest."""

    def __init__(self, entries: Iterable[tuple[str, str, frozenset[str]]] = ()) -> None:
        self._by_digest: dict[bytes, Principal] = {}
        for name, token, roles in entries:
            self._add(name, token, roles)

    def __len__(self) -> int:
        return len(self._by_digest)

    def __repr__(self) -> str:
        names = sorted(principal.id for principal in self._by_digest.values())
        return f"ApiKeys({names})"

    @classmethod
    def parse(cls, text: str, *, source: str, separator: str = "\n") -> ApiKeys:
        """Keys from ``text``: entries split at ``separator`` (newlines in a file, commas
        in an environment variable); ``source`` names the setting in errors."""
        entries: list[tuple[str, str, frozenset[str]]] = []
        for number, line in enumerate(text.split(separator), start=1):
            entry = line.partition("#")[0].strip() if separator == "\n" else line.strip()
            if not entry:
                continue
            name, colon, rest = entry.partition(":")
            token, _, role_text = rest.partition(":")
            where = f"entry {number}" + (f" ({name.strip()!r})" if name.strip() else "")
            if not colon or not name.strip() or not token.strip():
                raise InvalidSettings(source, f"{where} is not name:token[:roles]")
            entries.append((name.strip(), token.strip(), frozenset(role_text.split())))
        keys = cls()
        for name, token, roles in entries:
            try:
                keys._add(name, token, roles)
            except ValueError as error:
                raise InvalidSettings(source, str(error)) from None
        return keys

    @classmethod
    def from_file(cls, path: str | Path, *, source: str) -> ApiKeys:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise InvalidSettings(source, f"cannot read {str(path)!r}: {error}") from None
        return cls.parse(text, source=source)

    def merged(self, other: ApiKeys) -> ApiKeys:
        keys = ApiKeys()
        keys._by_digest = {**self._by_digest, **other._by_digest}
        return keys

    def principal(self, token: str) -> Principal | None:
        """The principal whose key ``token`` is, or None."""
        return self._by_digest.get(_digest(token))

    def _add(self, name: str, token: str, roles: frozenset[str]) -> None:
        if len(token) < MIN_API_KEY_LENGTH:
            raise ValueError(f"the key of {name!r} is shorter than {MIN_API_KEY_LENGTH} characters")
        if not token.isprintable() or any(c.isspace() for c in token):
            raise ValueError(f"the key of {name!r} holds spaces or control characters")
        digest = _digest(token)
        if digest in self._by_digest:
            raise ValueError(f"{name!r} has the same key as {self._by_digest[digest].id!r}")
        self._by_digest[digest] = Principal(id=name, scheme="api-key", roles=roles)


class JwtVerifier:
    """Checks JWTs against one public key or the keys of a JWKS document."""

    def __init__(
        self,
        keys: Mapping[str | None, Any],
        *,
        algorithms: Sequence[str] = ASYMMETRIC_ALGORITHMS,
        issuer: str | None = None,
        audience: str | None = None,
        leeway: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        refused = sorted(set(algorithms) - set(ASYMMETRIC_ALGORITHMS))
        if refused:
            raise InvalidSettings(
                "jwt algorithms",
                f"{', '.join(refused)} cannot be verified with a public key; accepted: "
                + ", ".join(ASYMMETRIC_ALGORITHMS),
            )
        if not keys:
            raise InvalidSettings("jwt keys", "no key to verify tokens with")
        self._keys = dict(keys)
        self._algorithms = list(algorithms)
        self._issuer = issuer
        self._audience = audience
        self._leeway = leeway
        # Expiry is checked here, on this clock, for fresh tokens and remembered ones alike.
        self._clock = clock
        # digest of a verified token -> (its principal, when it expires)
        self._verified: OrderedDict[bytes, tuple[Principal, float]] = OrderedDict()

    def __repr__(self) -> str:
        return f"JwtVerifier(keys={len(self._keys)}, issuer={self._issuer!r})"

    @classmethod
    def from_public_key(cls, path: str | Path, **options: Any) -> JwtVerifier:
        """A verifier for tokens signed with the private half of the PEM key at ``path``."""
        try:
            pem = Path(path).read_bytes()
        except OSError as error:
            raise InvalidSettings("jwt public key", f"cannot read {str(path)!r}: {error}") from None
        try:
            from cryptography.hazmat.primitives.serialization import load_pem_public_key

            key = load_pem_public_key(pem)
        except ValueError as error:
            raise InvalidSettings(
                "jwt public key", f"{str(path)!r} is not a PEM public key: {error}"
            ) from None
        return cls({None: key}, **options)

    @classmethod
    def from_jwks(cls, path: str | Path, **options: Any) -> JwtVerifier:
        """A verifier for tokens signed by any key of the JWKS document at ``path``."""
        try:
            document = json.loads(Path(path).read_text(encoding="utf-8"))
            found = jwt.PyJWKSet.from_dict(document)
        except (OSError, ValueError, jwt.PyJWTError) as error:
            raise InvalidSettings("jwt jwks", f"cannot use {str(path)!r}: {error}") from None
        keys = {key.key_id: key.key for key in found.keys}
        if len(keys) != len(found.keys):
            raise InvalidSettings("jwt jwks", f"{str(path)!r} has two keys with one kid")
        return cls(keys, **options)

    def principal(self, token: str) -> Principal:
        """The principal a valid token names; ``Unauthenticated`` otherwise."""
        digest = _digest(token)
        known = self._verified.get(digest)
        if known is not None:
            principal, expires = known
            if self._clock() < expires + self._leeway:
                self._verified.move_to_end(digest)
                return principal
            del self._verified[digest]
        principal, expires = self._verify(token)
        self._verified[digest] = (principal, expires)
        if len(self._verified) > JWT_CACHE_SIZE:
            self._verified.popitem(last=False)
        return principal

    def _verify(self, token: str) -> tuple[Principal, float]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthenticated("the token is malformed") from None
        key = self._key_for(header.get("kid"))
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=self._algorithms,
                issuer=self._issuer,
                audience=self._audience,
                leeway=self._leeway,
                options={
                    "require": ["exp", "sub"],
                    "verify_aud": self._audience is not None,
                    "verify_exp": False,
                },
            )
        except jwt.InvalidSignatureError:
            raise Unauthenticated("the token's signature does not verify") from None
        except jwt.PyJWTError as error:
            raise Unauthenticated(f"the token is not acceptable: {error}") from None
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject.strip():
            raise Unauthenticated("the token names no subject")
        expires = claims["exp"]
        if isinstance(expires, bool) or not isinstance(expires, int | float):
            raise Unauthenticated("the token's exp is not a time")
        if self._clock() >= expires + self._leeway:
            raise Unauthenticated("the token has expired")
        return Principal(id=subject, scheme="jwt", roles=_roles(claims)), float(expires)

    def _key_for(self, kid: object) -> Any:
        if kid is None and len(self._keys) == 1:
            return next(iter(self._keys.values()))
        if isinstance(kid, str) and kid in self._keys:
            return self._keys[kid]
        if None in self._keys and len(self._keys) == 1:
            return self._keys[None]
        raise Unauthenticated("the token's key is not one this service trusts")


def _roles(claims: Mapping[str, Any]) -> frozenset[str]:
    roles: set[str] = set()
    listed = claims.get("roles")
    if isinstance(listed, list):
        roles.update(role for role in listed if isinstance(role, str))
    scope = claims.get("scope")
    if isinstance(scope, str):
        roles.update(scope.split())
    return frozenset(roles)


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
