"""``MemoryDeadLetterBox``: dead letters kept in a dict, for the in-process bus."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import msgspec

from eventcore.errors import DeadLetterNotFound
from eventcore.messaging._claims import claimable, claimed, utc_now
from eventcore.messaging._input import check_claim, check_letter, check_letter_filter
from eventcore.messaging.bus import DEFAULT_CLAIM_LEASE, DeadLetter
from eventcore.messaging.names import check_name

__all__ = ["MemoryDeadLetterBox"]


class MemoryDeadLetterBox:
    """``check_open`` raises ``BusClosed`` once the owning bus is closed."""

    def __init__(self, check_open: Callable[[], None]) -> None:
        self._check_open = check_open
        self._letters: dict[str, DeadLetter] = {}
        # The sort key of every id ever put, so ``after`` still pages on when the letter
        # it names was dropped in the meantime.
        self._keys: dict[str, tuple[datetime, str]] = {}

    async def put(self, letter: DeadLetter) -> None:
        self._check_open()
        check_letter(letter)
        self._letters[letter.letter_id] = letter
        self._keys[letter.letter_id] = (letter.failed_at, letter.letter_id)

    async def letters(
        self,
        *,
        group: str | None = None,
        topic: str | None = None,
        after: str | None = None,
        limit: int = 100,
    ) -> list[DeadLetter]:
        self._check_open()
        check_letter_filter(group, topic, limit)
        chosen = [
            letter
            for letter in self._letters.values()
            if (group is None or letter.group == group) and (topic is None or letter.topic == topic)
        ]
        chosen.sort(key=_sort_key)
        if after is not None:
            mark = self._keys.get(after)
            if mark is None:
                raise DeadLetterNotFound(after)
            chosen = [letter for letter in chosen if _sort_key(letter) > mark]
        return chosen[:limit]

    async def get(self, letter_id: str) -> DeadLetter:
        self._check_open()
        letter = self._letters.get(letter_id)
        if letter is None:
            raise DeadLetterNotFound(letter_id)
        return letter

    async def drop(self, letter_id: str) -> None:
        self._check_open()
        if self._letters.pop(letter_id, None) is None:
            raise DeadLetterNotFound(letter_id)

    async def request_retry(self, letter_id: str) -> None:
        letter = await self.get(letter_id)
        if letter.status == "dead":
            self._letters[letter_id] = msgspec.structs.replace(letter, status="retry")

    async def claim_retries(
        self,
        group: str,
        topic: str,
        limit: int = 100,
        *,
        holder: str = "",
        lease: float = DEFAULT_CLAIM_LEASE,
    ) -> list[DeadLetter]:
        self._check_open()
        check_letter_filter(group, topic, limit)
        check_claim(holder, lease)
        now = utc_now()
        due = sorted(
            (
                letter
                for letter in self._letters.values()
                if letter.group == group and letter.topic == topic and claimable(letter, now)
            ),
            key=_sort_key,
        )[:limit]
        taken = [claimed(letter, holder, now, lease) for letter in due]
        for letter in taken:
            self._letters[letter.letter_id] = letter
        return taken

    async def count(self, *, group: str | None = None, topic: str | None = None) -> int:
        self._check_open()
        if group is not None:
            check_name("group", group)
        if topic is not None:
            check_name("topic", topic)
        return sum(
            1
            for letter in self._letters.values()
            if (group is None or letter.group == group) and (topic is None or letter.topic == topic)
        )


def _sort_key(letter: DeadLetter) -> tuple[datetime, str]:
    return (letter.failed_at, letter.letter_id)
