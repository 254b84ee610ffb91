"""Writers of one SQLite file take turns across processes.

SQLite's write lock is not fair. A writer that meets it held sleeps in its busy handler
and looks again; the holder, done, commits and — with more appends queued — asks again
at once, and usually wins, because it is running while the waiter sleeps. Two processes
each keeping four appends in flight on one store (``tests/store/test_sqlite.py``)
measured runs of 356-640 commits in a row by one of them and waits of up to 1.4 s for
the lock (22 appends against 3,486 in 5 s in the run that reported it).

The fix is a door in front of the lock: a file beside the database (``<file>-turn``),
locked with ``flock``. A writer takes the door, then the write lock (``BEGIN
IMMEDIATE``), then lets go of the door and does its work. While it works, the next
writer takes the door and waits at the lock; when the first commits and comes back, the
door is shut to it until the second has the lock. So under contention the writers of
different processes alternate, and a writer waits for at most the transactions of the
writers ahead of it, not for its luck. Uncontended, the door costs two system calls.

Everything is polled with short jittered pauses (0.1 ms doubling to 0.5 ms: the lock is
held for about one commit, and a longer pause leaves it idle) up to the caller's busy
timeout: a process stopped while holding the door cannot hang the others
past it. ``flock`` locks belong to an open file, so two connections of one process
take turns too, and a killed process lets go of the door with its files.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import random
import sqlite3
import time
from collections.abc import Callable
from typing import Any, Final

__all__ = ["FileConnection", "begin_in_turn"]

_FIRST_PAUSE: Final = 0.0001
_LONGEST_PAUSE: Final = 0.0005
_BUSY: Final = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})


class FileConnection(sqlite3.Connection):
    """A connection to an eventcore file, which keeps its door open while it writes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: The door's file descriptor, opened at the first write; None when it cannot be
        #: had (a read-only directory): such a writer takes the lock as it comes.
        self.door: int | None = None
        self.door_looked_for = False

    def close(self) -> None:
        door, self.door = self.door, None
        if door is not None:
            with contextlib.suppress(OSError):
                os.close(door)
        super().close()


def begin_in_turn(connection: sqlite3.Connection, timeout: float) -> None:
    """``BEGIN IMMEDIATE`` on ``connection`` (autocommit mode), in turn with the other
    writers of its file; ``sqlite3.OperationalError`` once ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    door = _door(connection)
    if door is not None:
        _retry(lambda: _shut(door), deadline, "another writer kept the file's turn too long")
    try:
        previous = connection.execute("PRAGMA busy_timeout").fetchone()[0]
        # Our own pauses rather than SQLite's handler (1, 2, 5, 10, 15, 20, 25… ms):
        # the lock is held for about a commit, and found free soon after.
        connection.execute("PRAGMA busy_timeout = 0")
        try:
            _retry(lambda: _begin(connection), deadline, "database is locked")
        finally:
            connection.execute(f"PRAGMA busy_timeout = {int(previous)}")
    finally:
        if door is not None:
            fcntl.flock(door, fcntl.LOCK_UN)


def _shut(door: int) -> bool:
    try:
        fcntl.flock(door, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _begin(connection: sqlite3.Connection) -> bool:
    try:
        connection.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as error:
        code = getattr(error, "sqlite_errorcode", None)
        if code is not None and code & 0xFF in _BUSY:
            return False
        raise
    return True


def _retry(attempt: Callable[[], bool], deadline: float, why: str) -> None:
    pause = _FIRST_PAUSE
    while not attempt():
        if time.monotonic() >= deadline:
            raise sqlite3.OperationalError(why)
        time.sleep(random.uniform(pause / 2, pause))
        pause = min(pause * 2, _LONGEST_PAUSE)


def _door(connection: sqlite3.Connection) -> int | None:
    if not isinstance(connection, FileConnection):
        return None
    if not connection.door_looked_for:
        connection.door_looked_for = True
        rows = connection.execute("PRAGMA database_list").fetchall()
        path = next((row[2] for row in rows if row[1] == "main"), "")
        if path:
            with contextlib.suppress(OSError):
                connection.door = os.open(
                    f"{path}-turn", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644
                )
    return connection.door
