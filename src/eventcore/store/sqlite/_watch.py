"""Noticing commits that other processes make to the store's file.

SQLite sends no notification between processes. What it offers is ``PRAGMA
data_version``: a number, per connection, that changes whenever another connection has
committed to the file. Asking is cheap (SQLite compares a counter in the WAL index, in
shared memory: no file I/O, no lock, a few microseconds), so while someone waits in
``wait_for_events`` one thread asks every ``WATCH_INTERVAL`` on a connection of its own;
when the number has changed, it reads the head of the log and advances the store's
``HeadSignal``, which wakes the waiters. A change made by this store's own writer counts
too (it is another connection); that costs one needless head read per append, while its
waiters were woken already by the append itself.

With nobody waiting the thread sleeps on an event, so a store that only writes, or a
follower busy catching up, costs nothing. Measured (bench ``k`` across processes,
docs/guides/two-services.md): a hop between processes in about the interval, at well
under one percent of a core while waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import Callable, Iterator
from typing import Final

from eventcore.store._head_signal import HeadSignal

__all__ = ["WATCH_INTERVAL", "CommitWatch"]

#: How often a waiting store looks at ``data_version``: the latency of a wake-up from
#: another process, at about 200 cheap looks a second while anyone waits.
WATCH_INTERVAL: Final = 0.005
#: After a failed look (the file unreadable for a moment), the next comes this much later.
_AFTER_FAILURE: Final = 0.1
_HEAD: Final = "SELECT coalesce(max(position), 0) FROM events"


class CommitWatch:
    """One thread and one read connection, started by the first waiter."""

    def __init__(self, name: str, connect: Callable[[], sqlite3.Connection], signal: HeadSignal):
        self._name = name
        self._connect = connect
        self._signal = signal
        # Counted on the loop, read by the thread (a plain int read is atomic).
        self._waiters = 0
        self._wanted = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @contextlib.contextmanager
    def watching(self) -> Iterator[None]:
        """While in this block, commits by other processes advance the head signal."""
        if self._thread is None:
            self._loop = asyncio.get_running_loop()
            self._thread = threading.Thread(target=self._main, name=self._name, daemon=True)
            self._thread.start()
        self._waiters += 1
        self._wanted.set()
        try:
            yield
        finally:
            self._waiters -= 1

    async def stop(self, *, within: float) -> None:
        """End the thread and close its connection (waits at most ``within`` s)."""
        self._stopping.set()
        self._wanted.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, within)

    # --- the thread's side ---------------------------------------------------------------

    def _main(self) -> None:
        try:
            connection = self._connect()
        except Exception:
            return  # the waiters still have their poll
        try:
            self._watch(connection)
        finally:
            with contextlib.suppress(sqlite3.Error):
                connection.close()

    def _watch(self, connection: sqlite3.Connection) -> None:
        seen: int | None = None
        while not self._stopping.is_set():
            if self._waiters == 0:
                self._wanted.clear()
                if self._waiters == 0:  # a waiter may have come between the two looks
                    self._wanted.wait()
                continue
            pause = WATCH_INTERVAL
            try:
                version = connection.execute("PRAGMA data_version").fetchone()[0]
                if version != seen:
                    # The head is read after the version: a commit between the two is
                    # in the head now, or changes the version again for the next look.
                    head = connection.execute(_HEAD).fetchall()[0][0]
                    seen = version
                    self._advance(int(head))
            except sqlite3.Error:
                pause = _AFTER_FAILURE
            self._stopping.wait(pause)

    def _advance(self, head: int) -> None:
        loop = self._loop
        if loop is not None:
            # A loop already closed has nobody left to wake.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._signal.advance, head)
