"""Helpers for the NATS key-value buckets the bus keeps: opening them, safe keys, listing.

KV keys allow only letters, digits and ``-/_=.``; eventcore names (topics, groups,
members) already fit, but free-form strings (message ids, checkpoint names) may not, so
those go through ``key_token``: kept as they are when safe, else base64url-encoded
behind ``=``, a character no eventcore name contains (so the two never collide).
"""

from __future__ import annotations

import base64
import re

from nats.js.api import KeyValueConfig, StorageType
from nats.js.client import JetStreamContext
from nats.js.errors import BucketNotFoundError, NotFoundError
from nats.js.kv import KeyValue

__all__ = ["entries", "key_token", "open_bucket"]

_SAFE = re.compile(r"[A-Za-z0-9_-]+")


def key_token(value: str) -> str:
    """``value`` as one KV key token (no dots): itself if safe, else ``=`` + base64url."""
    if _SAFE.fullmatch(value):
        return value
    return "=" + base64.urlsafe_b64encode(value.encode()).decode().rstrip("=")


async def open_bucket(js: JetStreamContext, name: str, *, max_age: float | None = None) -> KeyValue:
    """The bucket ``name``, created (file storage, one revision per key) when missing.

    ``max_age`` only collects garbage (keys nobody rewrites any more); an existing
    bucket whose ``max_age`` is shorter is widened so live keys never vanish early."""
    try:
        kv = await js.key_value(name)
    except (BucketNotFoundError, NotFoundError):
        config = KeyValueConfig(bucket=name, history=1, storage=StorageType.FILE, ttl=max_age)
        # Two processes may create it at once; creating an identical bucket is a no-op.
        return await js.create_key_value(config)
    if max_age is not None:
        info = await js.stream_info(f"KV_{name}")
        current = info.config.max_age
        if current and current < max_age:
            info.config.max_age = max_age
            await js.update_stream(info.config)
    return kv


async def entries(kv: KeyValue, pattern: str) -> list[KeyValue.Entry]:
    """Every live entry whose key matches ``pattern`` (``*``/``>`` wildcards)."""
    watcher = await kv.watch(pattern, ignore_deletes=True)
    found: list[KeyValue.Entry] = []
    try:
        while True:
            entry = await watcher.updates(timeout=5.0)  # type: ignore[no-untyped-call]
            if entry is None:
                return found
            found.append(entry)
            if entry.delta == 0:
                return found
    finally:
        await watcher.stop()  # type: ignore[no-untyped-call]
