"""Protecting personal data on its way out of a domain: hash, mask, tokenize.

* ``hash_value`` — HMAC-SHA256 under a secret key, as 64 hex digits. The same value
  under the same key always gives the same digest, so the receiving domain can still
  count and join on it; without the key nobody can test a guess (an e-mail address has
  little entropy, so an unkeyed hash would be a lookup table away from the address).
* ``mask_text`` — keeps a short suffix (the last four card digits) and replaces the
  rest with a mask character, but only when at least as many characters are hidden as
  shown: a value too short for that is masked whole.
* ``Tokenizer`` — a reversible token: deterministic authenticated encryption with
  AES-SIV (RFC 5297, from the ``cryptography`` package). Deterministic, so equal values
  give equal tokens and joins work as with a hash; authenticated, so a token altered or
  made under another key is refused rather than decoded into garbage; and standard,
  rather than a construction of our own. The key never leaves the source domain: only
  a holder of it can ``reveal`` a token. The 64-byte AES-SIV key is derived with
  HKDF-SHA256 from the secret, so any secret of at least ``MIN_SECRET_BYTES`` serves
  (and one secret used for both hash and tokenize gives unrelated keys).

A value is protected as its JSON text, so ``"1"`` and ``1`` differ and an object or a
list can be protected whole; object keys are sorted first, so the same object always
gives the same hash and token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any, Final

import msgspec

from eventcore.errors import InvalidInput, MissingDependency

__all__ = ["MIN_SECRET_BYTES", "TOKEN_PREFIX", "Hasher", "Tokenizer", "hash_value", "mask_text"]

#: The shortest secret accepted for hash and tokenize keys (256 bits).
MIN_SECRET_BYTES: Final = 32
#: What every token starts with, so a reader can tell one from other text.
TOKEN_PREFIX: Final = "tok_"
_KEY_INFO: Final = b"eventcore federation tokenize v1"


def canonical(value: Any) -> bytes:
    """The JSON text a value is protected as."""
    return msgspec.json.encode(value, order="sorted")


def check_secret(secret: bytes) -> bytes:
    if len(secret) < MIN_SECRET_BYTES:
        raise InvalidInput(
            f"a key must be at least {MIN_SECRET_BYTES} bytes long, got {len(secret)}"
        )
    return secret


def hash_value(value: Any, key: bytes) -> str:
    return hmac.new(key, canonical(value), hashlib.sha256).hexdigest()


class Hasher:
    """``hash_value`` under one key, with the key's HMAC set up once (copying it is
    cheaper than keying a new one for every value)."""

    __slots__ = ("_keyed",)

    def __init__(self, key: bytes) -> None:
        self._keyed = hmac.new(key, digestmod=hashlib.sha256)

    def __call__(self, value: Any) -> str:
        mac = self._keyed.copy()
        mac.update(canonical(value))
        return mac.hexdigest()


def mask_text(text: str, keep: int, char: str) -> str:
    shown = keep if len(text) >= 2 * keep else 0
    return char * (len(text) - shown) + text[len(text) - shown :]


class Tokenizer:
    """Makes tokens of values and reveals them again, with one secret."""

    __slots__ = ("_siv",)

    def __init__(self, secret: bytes) -> None:
        try:
            from cryptography.hazmat.primitives import hashes
            from cryptography.hazmat.primitives.ciphers.aead import AESSIV
            from cryptography.hazmat.primitives.kdf.hkdf import HKDF
        except ImportError as error:
            raise MissingDependency.of(error, "federation's tokenize") from None
        check_secret(secret)
        key = HKDF(algorithm=hashes.SHA256(), length=64, salt=None, info=_KEY_INFO).derive(secret)
        self._siv = AESSIV(key)

    def tokenize(self, value: Any) -> str:
        sealed = self._siv.encrypt(canonical(value), None)
        return TOKEN_PREFIX + base64.urlsafe_b64encode(sealed).rstrip(b"=").decode("ascii")

    def reveal(self, token: str) -> Any:
        """The value ``token`` was made from; ``InvalidInput`` if it is not a token of
        this key (altered, truncated, or made under another)."""
        from cryptography.exceptions import InvalidTag

        if not isinstance(token, str) or not token.startswith(TOKEN_PREFIX):
            raise InvalidInput(f"not a token: it does not start with {TOKEN_PREFIX!r}")
        body = token[len(TOKEN_PREFIX) :]
        try:
            sealed = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            return msgspec.json.decode(self._siv.decrypt(sealed, None))
        except (ValueError, InvalidTag):
            # binascii.Error is a ValueError; so is too short a ciphertext.
            raise InvalidInput(
                "not a token of this key (altered, or made under another key)"
            ) from None
