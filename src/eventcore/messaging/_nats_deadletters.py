"""``KvDeadLetterBox``: dead letters in the NATS KV bucket ``{ns}_deadletters``.

One key per letter, ``{group}.{topic}.{message id token}``, so one group's (or one
group's and topic's) letters are listed by a key pattern. A dropped or claimed letter
leaves a tombstone (its sort key, no body) so that ``after`` can still page on from it;
a later ``put`` of the same id replaces the tombstone.

Letters are few (a group parks only what it gave up on), so listing reads them all and
sorts them here.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import msgspec
from nats.js.client import JetStreamContext
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from eventcore.errors import DeadLetterNotFound, InvalidInput
from eventcore.messaging._input import check_letter, check_letter_filter
from eventcore.messaging._nats_errors import translated
from eventcore.messaging._nats_kv import entries, key_token
from eventcore.messaging.bus import DeadLetter
from eventcore.messaging.names import check_name

__all__ = ["KvDeadLetterBox"]


class _Stored(msgspec.Struct, frozen=True):
    """A letter, or (``letter`` None) the tombstone of one, with its ``failed_at``."""

    failed_at: datetime
    letter: DeadLetter | None = None


_encoder = msgspec.json.Encoder()
_stored = msgspec.json.Decoder(_Stored)


def _decode(raw: bytes | None) -> DeadLetter | datetime:
    """The letter in ``raw``, or the ``failed_at`` of its tombstone."""
    stored = _stored.decode(raw or b"")
    return stored.failed_at if stored.letter is None else stored.letter


def _encode(letter: DeadLetter) -> bytes:
    return _encoder.encode(_Stored(letter.failed_at, letter))


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


class KvDeadLetterBox:
    """The ``DeadLetterBox`` protocol over one KV bucket."""

    def __init__(
        self, kv: KeyValue, check_open: Callable[[], None], *, js: JetStreamContext, bucket: str
    ) -> None:
        self._kv = kv
        self._open = check_open
        self._js = js
        self._bucket = bucket

    async def put(self, letter: DeadLetter) -> None:
        self._open()
        check_letter(letter)
        with translated("keeping a dead letter"):
            await self._kv.put(_key(letter.group, letter.topic, letter.message_id), _encode(letter))

    async def _all(self, pattern: str) -> list[DeadLetter]:
        """The letters (not tombstones) whose keys match ``pattern``."""
        letters: list[DeadLetter] = []
        with translated("listing dead letters"):
            found = await entries(self._js, self._bucket, pattern)
        for entry in found:
            if entry.value is None:
                continue
            value = _decode(entry.value)
            if isinstance(value, DeadLetter):
                letters.append(value)
        return letters

    async def letters(
        self,
        *,
        group: str | None = None,
        topic: str | None = None,
        after: str | None = None,
        limit: int = 100,
    ) -> list[DeadLetter]:
        self._open()
        check_letter_filter(group, topic, limit)
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
        key = _key_of(letter_id) if isinstance(letter_id, str) else None
        if key is None:
            raise DeadLetterNotFound(str(letter_id))
        with translated("reading a dead letter"):
            try:
                entry = await self._kv.get(key)
            except KeyNotFoundError:
                raise DeadLetterNotFound(letter_id) from None
        value = _decode(entry.value)
        if isinstance(value, DeadLetter):
            return _sort_key(value)
        return (value, letter_id)

    async def _entry(self, letter_id: str) -> tuple[DeadLetter, int]:
        key = _key_of(letter_id) if isinstance(letter_id, str) else None
        if key is None:
            raise DeadLetterNotFound(str(letter_id))
        with translated("reading a dead letter"):
            try:
                entry = await self._kv.get(key)
            except KeyNotFoundError:
                raise DeadLetterNotFound(letter_id) from None
        value = _decode(entry.value)
        if not isinstance(value, DeadLetter):
            raise DeadLetterNotFound(letter_id)
        return value, entry.revision or 0

    async def get(self, letter_id: str) -> DeadLetter:
        self._open()
        letter, _ = await self._entry(letter_id)
        return letter

    async def _bury(self, letter: DeadLetter, revision: int) -> bool:
        """Replace ``letter`` by its tombstone unless it changed since ``revision``."""
        key = _key(letter.group, letter.topic, letter.message_id)
        tombstone = _encoder.encode(_Stored(letter.failed_at))
        with translated("removing a dead letter"):
            try:
                await self._kv.update(key, tombstone, last=revision)
            except KeyWrongLastSequenceError:
                return False
        return True

    async def drop(self, letter_id: str) -> None:
        self._open()
        while True:
            letter, revision = await self._entry(letter_id)
            if await self._bury(letter, revision):
                return

    async def request_retry(self, letter_id: str) -> None:
        self._open()
        while True:
            letter, revision = await self._entry(letter_id)
            retry = msgspec.structs.replace(letter, status="retry")
            key = _key(letter.group, letter.topic, letter.message_id)
            with translated("marking a dead letter for retry"):
                try:
                    await self._kv.update(key, _encode(retry), last=revision)
                except KeyWrongLastSequenceError:
                    continue
            return

    async def claim_retries(self, group: str, topic: str, limit: int = 100) -> list[DeadLetter]:
        self._open()
        check_letter_filter(group, topic, limit)
        with translated("listing dead letters"):
            found = await entries(self._js, self._bucket, f"{group}.{topic}.*")
        due: list[tuple[DeadLetter, int]] = []
        for entry in found:
            value = _decode(entry.value)
            if isinstance(value, DeadLetter) and value.status == "retry":
                due.append((value, entry.revision or 0))
        due.sort(key=lambda pair: _sort_key(pair[0]))
        claimed: list[DeadLetter] = []
        for letter, revision in due:
            if len(claimed) == limit:
                break
            # The compare-and-set makes a letter claimed by exactly one of two racing claimers.
            if await self._bury(letter, revision):
                claimed.append(letter)
        return claimed

    async def count(self, *, group: str | None = None) -> int:
        self._open()
        if group is not None:
            check_name("group", group)
        letters = await self._all(">" if group is None else f"{group}.>")
        return len(letters)
