"""``MemoryDeadLetterBox``: dead letters kept in a dict, for the in-process bus."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import msgspec

from eventcore.errors import DeadLetterNotFound
from eventcore.messaging._backend import LetterBoxFront
from eventcore.messaging._claims import claimable, claimed, utc_now
from eventcore.messaging.bus import DeadLetter

__all__ = ["MemoryDeadLetterBox"]


class MemoryDeadLetterBox(LetterBoxFront):
    """``check_open`` raises ``BusClosed`` once the owning bus is closed."""

    def __init__(self, check_open: Callable[[], None]) -> None:
        super().__init__(check_open)
        self._letters_by_id: dict[str, DeadLetter] = {}
        # The sort key of every id ever put, so ``after`` still pages on when the letter
        # it names was dropped in the meantime.
        self._keys: dict[str, tuple[datetime, str]] = {}

    async def _put(self, letter: DeadLetter) -> None:
        self._letters_by_id[letter.letter_id] = letter
        self._keys[letter.letter_id] = (letter.failed_at, letter.letter_id)

    async def _letters(
        self, group: str | None, topic: str | None, after: str | None, limit: int
    ) -> list[DeadLetter]:
        chosen = [
            letter
            for letter in self._letters_by_id.values()
            if (group is None or letter.group == group) and (topic is None or letter.topic == topic)
        ]
        chosen.sort(key=_sort_key)
        if after is not None:
            mark = self._keys.get(after)
            if mark is None:
                raise DeadLetterNotFound(after)
            chosen = [letter for letter in chosen if _sort_key(letter) > mark]
        return chosen[:limit]

    async def _get(self, letter_id: str) -> DeadLetter:
        letter = self._letters_by_id.get(letter_id)
        if letter is None:
            raise DeadLetterNotFound(letter_id)
        return letter

    async def _drop(self, letter_id: str) -> None:
        if self._letters_by_id.pop(letter_id, None) is None:
            raise DeadLetterNotFound(letter_id)

    async def _request_retry(self, letter_id: str) -> None:
        letter = await self._get(letter_id)
        if letter.status == "dead":
            self._letters_by_id[letter_id] = msgspec.structs.replace(letter, status="retry")

    async def _claim_retries(
        self, group: str, topic: str, limit: int, holder: str, lease: float
    ) -> list[DeadLetter]:
        now = utc_now()
        due = sorted(
            (
                letter
                for letter in self._letters_by_id.values()
                if letter.group == group and letter.topic == topic and claimable(letter, now)
            ),
            key=_sort_key,
        )[:limit]
        taken = [claimed(letter, holder, now, lease) for letter in due]
        for letter in taken:
            self._letters_by_id[letter.letter_id] = letter
        return taken

    async def _count(self, group: str | None, topic: str | None) -> int:
        return sum(
            1
            for letter in self._letters_by_id.values()
            if (group is None or letter.group == group) and (topic is None or letter.topic == topic)
        )


def _sort_key(letter: DeadLetter) -> tuple[datetime, str]:
    return (letter.failed_at, letter.letter_id)
