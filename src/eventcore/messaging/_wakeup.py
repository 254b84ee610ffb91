"""``Wakeup``: many waiters, woken together by whoever changes something."""

from __future__ import annotations

import asyncio

__all__ = ["Wakeup"]


class Wakeup:
    """An ``asyncio.Event`` set and replaced on every change, so waiters never spin.

    A waiter takes ``current()`` *before* it looks at the state it waits on, then waits
    on it; a change made after the look fires that very event, so none is missed.
    """

    def __init__(self) -> None:
        self._event: asyncio.Event | None = None

    def current(self) -> asyncio.Event:
        if self._event is None:
            self._event = asyncio.Event()
        return self._event

    def fire(self) -> None:
        if self._event is not None:
            self._event.set()
            self._event = None
