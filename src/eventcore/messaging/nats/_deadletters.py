"""``KvDeadLetterBox``: dead letters in the NATS KV bucket ``{ns}_deadletters``.

One key per letter, ``{group}.{topic}.{message id token}``, so one group's (or one
group's and topic's) letters are listed by a key pattern. A dropped letter
leaves a tombstone (its sort key, no body) so that ``after`` can still page on from it;
a later ``put`` of the same id replaces the tombstone.

Letters are few (a group parks only what it gave up on), so listing reads them all and
sorts them here.

A letter must always fit, or its message could never be parked and would come again for
ever, holding up its partition. A KV value is one NATS message, at most the server's
``max_payload``, and a letter keeps its message's body whole (base64 in JSON, a third
larger), so a letter whose message was near that size cannot be one value. Then its
body goes to the bucket ``{ns}_deadletter_bodies`` in parts that each fit, under
``{letter key}.{part}``, written before the letter that counts them
(``_Stored.body_parts``); reading the letter joins them again. Parts a replaced or
removed letter leaves behind are deleted after it; should that fail, they are only
garbage, never read (the letter says how many parts are its own).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import NamedTuple

import msgspec
from nats.js.client import JetStreamContext
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from eventcore._nats.errors import translated
from eventcore._nats.kv import entries, key_token
from eventcore.errors import DeadLetterNotFound, InvalidInput
from eventcore.messaging._backend import LetterBoxFront
from eventcore.messaging._claims import claimable, claimed, utc_now
from eventcore.messaging.bus import DeadLetter
from eventcore.messaging.names import check_name

__all__ = ["KvDeadLetterBox"]


class _Stored(msgspec.Struct, frozen=True):
    """A letter, or (``letter`` None) the tombstone of one, with its ``failed_at``.
    ``body_parts`` > 0: the letter's body is kept apart, in that many parts."""

    failed_at: datetime
    letter: DeadLetter | None = None
    body_parts: int = 0


class _Live(NamedTuple):
    """A letter as read from the bucket: its key, the letter (its body left out when
    kept apart), how many body parts it has, and the revision it was read at."""

    key: str
    letter: DeadLetter
    body_parts: int
    revision: int


def _plain(value: object) -> object:
    # A str subclass (a ``StreamId`` as a letter's key) is kept as the str it is.
    if isinstance(value, str):
        return str(value)
    raise NotImplementedError(f"cannot keep a {type(value).__name__} in a dead letter")


_encoder = msgspec.json.Encoder(enc_hook=_plain)
_stored = msgspec.json.Decoder(_Stored)
#: Room kept in a value for what travels with it (subject, headers).
_MARGIN = 8 * 1024
#: The least room a part gets, whatever the server says.
_LEAST_PART = 4 * 1024


def _decode(raw: bytes | None) -> _Stored:
    return _stored.decode(raw or b"")


def _encode(letter: DeadLetter, body_parts: int = 0) -> bytes:
    return _encoder.encode(_Stored(letter.failed_at, letter, body_parts))


def _key(group: str, topic: str, message_id: str) -> str:
    return f"{group}.{topic}.{key_token(message_id)}"


def _key_of(letter_id: str) -> str | None:
    group, _, rest = letter_id.partition(":")
    topic, _, message_id = rest.partition(":")
    if not group or not topic or not message_id or "." in group or "." in topic:
        return None
    try:
        check_name("group", group)
        check_name("topic", topic)
    except InvalidInput:
        return None
    return _key(group, topic, message_id)


def _sort_key(letter: DeadLetter) -> tuple[datetime, str]:
    return (letter.failed_at, letter.letter_id)


class KvDeadLetterBox(LetterBoxFront):
    """The ``DeadLetterBox`` protocol over one KV bucket."""

    def __init__(
        self,
        kv: KeyValue,
        bodies: KeyValue,
        check_open: Callable[[], None],
        *,
        js: JetStreamContext,
        bucket: str,
        max_payload: Callable[[], int],
    ) -> None:
        super().__init__(check_open)
        self._kv = kv
        self._bodies = bodies
        self._js = js
        self._bucket = bucket
        self._max_payload = max_payload

    async def _put(self, letter: DeadLetter) -> None:
        key = _key(letter.group, letter.topic, letter.message_id)
        room = max(self._max_payload() - _MARGIN, _LEAST_PART)
        value = _encode(letter)
        with translated("keeping a dead letter"):
            before = await self._parts_of(key)
            parts = 0
            if len(value) > room:
                body = bytes(letter.body)
                parts = max(1, -(-len(body) // room))
                for part in range(parts):
                    await self._bodies.put(f"{key}.{part}", body[part * room : (part + 1) * room])
                value = _encode(msgspec.structs.replace(letter, body=b""), parts)
            await self._kv.put(key, value)
            await self._delete_parts(key, range(parts, before))

    async def _parts_of(self, key: str) -> int:
        """How many body parts the letter (or tombstone) now at ``key`` counts."""
        try:
            entry = await self._kv.get(key)
        except KeyNotFoundError:
            return 0
        return _decode(entry.value).body_parts

    async def _delete_parts(self, key: str, parts: range) -> None:
        for part in parts:
            await self._bodies.delete(f"{key}.{part}")

    async def _all(self, pattern: str) -> list[DeadLetter]:
        """The letters (not tombstones) whose keys match ``pattern``."""
        letters: list[DeadLetter] = []
        with translated("listing dead letters"):
            found = await entries(self._js, self._bucket, pattern)
        for entry in found:
            if entry.value is None:
                continue
            stored = _decode(entry.value)
            if stored.letter is not None:
                live = _Live(entry.key, stored.letter, stored.body_parts, entry.revision or 0)
                letters.append(await self._with_body(live))
        return letters

    async def _letters(
        self, group: str | None, topic: str | None, after: str | None, limit: int
    ) -> list[DeadLetter]:
        mark: tuple[datetime, str] | None = None
        if after is not None:
            mark = await self._mark_of(after)
        if group is None:
            pattern = ">" if topic is None else f"*.{topic}.*"
        else:
            pattern = f"{group}.>" if topic is None else f"{group}.{topic}.*"
        chosen = await self._all(pattern)
        chosen.sort(key=_sort_key)
        if mark is not None:
            chosen = [letter for letter in chosen if _sort_key(letter) > mark]
        return chosen[:limit]

    async def _mark_of(self, letter_id: str) -> tuple[datetime, str]:
        _, stored, _ = await self._read(letter_id)
        if stored.letter is not None:
            return _sort_key(stored.letter)
        return (stored.failed_at, letter_id)

    async def _entry(self, letter_id: str) -> _Live:
        """The live letter of ``letter_id`` as stored (its body maybe apart)."""
        key, stored, revision = await self._read(letter_id)
        if stored.letter is None:
            raise DeadLetterNotFound(letter_id)
        return _Live(key, stored.letter, stored.body_parts, revision)

    async def _read(self, letter_id: str) -> tuple[str, _Stored, int]:
        """The key, entry and revision of ``letter_id`` (a live letter or only its mark)."""
        key = _key_of(letter_id) if isinstance(letter_id, str) else None
        if key is None:
            raise DeadLetterNotFound(str(letter_id))
        with translated("reading a dead letter"):
            try:
                entry = await self._kv.get(key)
            except KeyNotFoundError:
                raise DeadLetterNotFound(letter_id) from None
        return key, _decode(entry.value), entry.revision or 0

    async def _get(self, letter_id: str) -> DeadLetter:
        return await self._with_body(await self._entry(letter_id))

    async def _with_body(self, live: _Live) -> DeadLetter:
        """``live``'s letter with its body, joined from its parts when kept apart."""
        if not live.body_parts:
            return live.letter
        body = bytearray()
        with translated("reading a dead letter's body"):
            for part in range(live.body_parts):
                entry = await self._bodies.get(f"{live.key}.{part}")
                body += entry.value or b""
        return msgspec.structs.replace(live.letter, body=bytes(body))

    async def _bury(self, live: _Live) -> bool:
        """Replace ``live``'s letter by its tombstone unless it changed since it was
        read; then delete its body parts."""
        tombstone = _encoder.encode(_Stored(live.letter.failed_at))
        with translated("removing a dead letter"):
            try:
                await self._kv.update(live.key, tombstone, last=live.revision)
            except KeyWrongLastSequenceError:
                return False
            await self._delete_parts(live.key, range(live.body_parts))
        return True

    async def _drop(self, letter_id: str) -> None:
        while not await self._bury(await self._entry(letter_id)):
            pass

    async def _request_retry(self, letter_id: str) -> None:
        while True:
            live = await self._entry(letter_id)
            if live.letter.status != "dead":
                return
            retry = msgspec.structs.replace(live.letter, status="retry")
            if await self._replace(live, retry, "marking a dead letter for retry"):
                return

    async def _replace(self, live: _Live, letter: DeadLetter, doing: str) -> bool:
        """Write ``letter`` over ``live`` (its body parts kept) unless it changed since
        it was read."""
        with translated(doing):
            try:
                await self._kv.update(
                    live.key, _encode(letter, live.body_parts), last=live.revision
                )
            except KeyWrongLastSequenceError:
                return False
        return True

    async def _claim_retries(
        self, group: str, topic: str, limit: int, holder: str, lease: float
    ) -> list[DeadLetter]:
        with translated("listing dead letters"):
            found = await entries(self._js, self._bucket, f"{group}.{topic}.*")
        now = utc_now()
        due: list[_Live] = []
        for entry in found:
            stored = _decode(entry.value)
            if stored.letter is not None and claimable(stored.letter, now):
                due.append(_Live(entry.key, stored.letter, stored.body_parts, entry.revision or 0))
        due.sort(key=lambda live: _sort_key(live.letter))
        taken: list[DeadLetter] = []
        for live in due:
            if len(taken) == limit:
                break
            letter = claimed(live.letter, holder, now, lease)
            # The compare-and-set makes a letter claimed by exactly one of two racing claimers.
            if await self._replace(live, letter, "claiming a dead letter"):
                taken.append(await self._with_body(live._replace(letter=letter)))
        return taken

    async def _count(self, group: str | None, topic: str | None) -> int:
        # Keys are group.topic.message: a wildcard stands in for what is not given.
        pattern = ">" if group is None and topic is None else f"{group or '*'}.{topic or '*'}.*"
        with translated("counting dead letters"):
            found = await entries(self._js, self._bucket, pattern)
        return sum(1 for entry in found if entry.value is not None and _decode(entry.value).letter)
