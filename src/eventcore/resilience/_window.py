"""The outcomes a closed breaker judges by: those of the last ``seconds``, at most ``limit``."""

from __future__ import annotations

from collections import deque

__all__ = ["Outcomes"]


class Outcomes:
    """A rolling window of call outcomes (time, failed), oldest first.

    An outcome leaves when it is ``seconds`` old (one recorded at ``t`` is gone at
    ``t + seconds``) or when ``limit`` newer ones have come after it. The cap bounds the
    memory of a busy target; the counts are kept as the window moves, so judging is O(1).
    """

    __slots__ = ("_entries", "_failures", "_limit", "_seconds", "_trailing")

    def __init__(self, seconds: float, limit: int) -> None:
        self._seconds = seconds
        self._limit = limit
        self._entries: deque[tuple[float, bool]] = deque()
        self._failures = 0
        # How many of the newest outcomes are failures, back to the last success.
        self._trailing = 0

    @property
    def calls(self) -> int:
        return len(self._entries)

    @property
    def failures(self) -> int:
        return self._failures

    @property
    def consecutive_failures(self) -> int:
        return self._trailing

    def expire(self, now: float) -> None:
        """Drop the outcomes that are ``seconds`` old at ``now``."""
        horizon = now - self._seconds
        while self._entries and self._entries[0][0] <= horizon:
            self._drop_oldest()

    def record(self, now: float, *, failed: bool) -> None:
        self.expire(now)
        if len(self._entries) == self._limit:
            self._drop_oldest()
        self._entries.append((now, failed))
        if failed:
            self._failures += 1
            self._trailing += 1
        else:
            self._trailing = 0

    def clear(self) -> None:
        self._entries.clear()
        self._failures = 0
        self._trailing = 0

    def _drop_oldest(self) -> None:
        _, failed = self._entries.popleft()
        if failed:
            self._failures -= 1
        # The trailing failures are the newest entries: losing the oldest shortens the
        # run only when every entry was part of it.
        self._trailing = min(self._trailing, len(self._entries))
