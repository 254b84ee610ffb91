"""Helpers for the NATS key-value buckets the bus keeps: opening them, safe keys, listing.

KV keys allow only letters, digits and ``-/_=.``; eventcore names (topics, groups,
members) already fit, but free-form strings (message ids, checkpoint names) may not, so
those go through ``key_token``: kept as they are when safe, else base64url-encoded
behind ``=``, a character no eventcore name contains (so the two never collide). A
value too long for a key (a key is a subject, and the server bounds the line that
carries it) becomes ``==`` and its SHA-256: no base64url text starts with ``=``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import re
from typing import Final

from nats.aio.msg import Msg
from nats.js.api import DeliverPolicy, KeyValueConfig, StorageType
from nats.js.client import JetStreamContext
from nats.js.errors import BadRequestError, BucketNotFoundError, NotFoundError
from nats.js.kv import KeyValue

__all__ = ["entries", "find_bucket", "key_token", "open_bucket"]

_SAFE = re.compile(r"[A-Za-z0-9_-]+")
#: The longest token a key is given; the whole key (bucket, group, topic and token)
#: stays well inside the server's 4 KiB control line.
_MAX_TOKEN: Final = 512
_OPERATION: Final = "KV-Operation"
_REMOVED: Final = frozenset({"DEL", "PURGE"})
_LISTING_TIMEOUT: Final = 5.0


def key_token(value: str) -> str:
    """``value`` as one KV key token (no dots): itself if safe, else ``=`` + base64url,
    or ``==`` + its SHA-256 when that would be longer than ``_MAX_TOKEN``."""
    if len(value) <= _MAX_TOKEN and _SAFE.fullmatch(value):
        return value
    raw = value.encode("utf-8", "surrogatepass")
    token = "=" + base64.urlsafe_b64encode(raw).decode().rstrip("=")
    if len(token) <= _MAX_TOKEN:
        return token
    return "==" + hashlib.sha256(raw).hexdigest()


async def find_bucket(js: JetStreamContext, name: str) -> KeyValue | None:
    """The bucket ``name`` if it exists; None otherwise (and nothing is created)."""
    try:
        return await js.key_value(name)
    except (BucketNotFoundError, NotFoundError):
        return None


async def open_bucket(js: JetStreamContext, name: str, *, max_age: float | None = None) -> KeyValue:
    """The bucket ``name``, created (file storage, one revision per key) when missing.

    ``max_age`` only collects garbage (keys nobody rewrites any more); an existing
    bucket whose ``max_age`` is shorter is widened so live keys never vanish early."""
    kv = await find_bucket(js, name)
    if kv is None:
        config = KeyValueConfig(bucket=name, history=1, storage=StorageType.FILE, ttl=max_age)
        try:
            return await js.create_key_value(config)
        except BadRequestError as refused:
            # Two processes creating the same bucket at once: the server usually treats
            # the second as a no-op, but under load it may refuse it as "subjects
            # overlap" (10065) while the first one's stream is being made. If the
            # bucket is there now, that was the race; if not, the refusal is real.
            kv = await find_bucket(js, name)
            if kv is None:
                raise refused from None
            return kv
    if max_age is not None:
        info = await js.stream_info(f"KV_{name}")
        current = info.config.max_age
        if current and current < max_age:
            info.config.max_age = max_age
            await js.update_stream(info.config)
    return kv


async def entries(js: JetStreamContext, bucket: str, pattern: str) -> list[KeyValue.Entry]:
    """Every live entry of ``bucket`` whose key matches ``pattern`` (``*``/``>``).

    Not ``KeyValue.watch``: nats-py decides that a watch has seen everything from a
    consumer-info reply, which counts messages already sent to us but not yet read as
    done — so a listing right after a put could come back empty. Here the stream says
    first whether any key matches, and the reading ends at the message the server
    marks as the last one pending.
    """
    stream, prefix = f"KV_{bucket}", f"$KV.{bucket}."
    info = await js.stream_info(stream, subjects_filter=prefix + pattern)
    if not info.state.subjects:
        return []
    found: list[KeyValue.Entry] = []
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def arrived(msg: Msg) -> None:
        meta = msg.metadata
        operation = msg.headers.get(_OPERATION) if msg.headers else None
        if operation not in _REMOVED:
            found.append(
                KeyValue.Entry(
                    bucket=bucket,
                    key=msg.subject[len(prefix) :],
                    value=msg.data,
                    revision=meta.sequence.stream,
                    delta=meta.num_pending,
                    created=None,
                    operation=operation,
                )
            )
        if meta.num_pending == 0 and not done.done():
            done.set_result(None)

    subscription = await js.subscribe(
        prefix + pattern,
        stream=stream,
        cb=arrived,
        ordered_consumer=True,
        deliver_policy=DeliverPolicy.LAST_PER_SUBJECT,
    )
    try:
        # Only a purge between the look and the subscription leaves nothing to read.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_LISTING_TIMEOUT):
                await done
    finally:
        await subscription.unsubscribe()
    return found
