"""Keys and tokens for the security tests: an RSA key pair written as PEM and as JWKS,
another key pair nobody trusts, and JWTs signed by either."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

ISSUER = "https://issuer.test"
AUDIENCE = "eventcore-tests"


def new_key() -> RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def write_public_pem(key: RSAPrivateKey, path: Path) -> Path:
    path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return path


def write_jwks(keys: dict[str, RSAPrivateKey], path: Path) -> Path:
    entries = []
    for kid, key in keys.items():
        entry = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
        entry.update(kid=kid, use="sig", alg="RS256")
        entries.append(entry)
    path.write_text(json.dumps({"keys": entries}))
    return path


def token(
    key: RSAPrivateKey,
    subject: str | None = "alice",
    *,
    expires_in: float = 300.0,
    kid: str | None = None,
    **claims: Any,
) -> str:
    now = int(time.time())
    body: dict[str, Any] = {"iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + expires_in}
    if subject is not None:
        body["sub"] = subject
    body.update(claims)
    headers = {"kid": kid} if kid is not None else None
    return jwt.encode(body, key, algorithm="RS256", headers=headers)
