"""The newest committed position a store knows of, and waiting for it to pass a mark.

Backs ``EventStore.wait_for_events`` in every backend: appends made through the store
(and, on PostgreSQL, notifications from other processes) ``advance`` it; followers
``wait`` on it. A waiter sleeps on an ``asyncio.Event`` that is set and replaced each time
the head moves, so it wakes once per advance and never spins.
"""

from __future__ import annotations

import asyncio

from eventcore.errors import StoreClosed

__all__ = ["HeadSignal"]


class HeadSignal:
    """Lives on one event loop, like the store that owns it."""

    def __init__(self, head: int = 0) -> None:
        self._head = head
        # Created on demand: only waiters need it, and set() wakes all of them at once.
        self._moved: asyncio.Event | None = None
        self._closed = False

    @property
    def head(self) -> int:
        return self._head

    def advance(self, position: int) -> None:
        """Record that ``position`` has committed; wakes waiters it concerns."""
        if position > self._head:
            self._head = position
            self._wake()

    def close(self) -> None:
        """Wake every waiter; they (and later callers) get ``StoreClosed``."""
        self._closed = True
        self._wake()

    def _wake(self) -> None:
        if self._moved is not None:
            self._moved.set()
            self._moved = None

    async def wait(self, after: int, timeout: float) -> bool:  # noqa: ASYNC109
        """True once the head is past ``after``; False when ``timeout`` seconds pass first."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout_at(loop.time() + max(timeout, 0.0)):
                while True:
                    if self._closed:
                        raise StoreClosed()
                    if self._head > after:
                        return True
                    if self._moved is None:
                        self._moved = asyncio.Event()
                    await self._moved.wait()
        except TimeoutError:
            return False
