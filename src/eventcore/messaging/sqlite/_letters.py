"""``SqliteDeadLetterBox``: the ``DeadLetterBox`` protocol in the bus file.

Letters sort by ``failed_at`` then id. The sort position of every id ever put is
kept (``bus_dead_letter_marks``), so ``after`` still pages on when the letter it names
was dropped in the meantime.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from eventcore.errors import DeadLetterNotFound
from eventcore.messaging._backend import LetterBoxFront
from eventcore.messaging._claims import claimable, claimed, utc_now
from eventcore.messaging.bus import DeadLetter
from eventcore.messaging.sqlite._thread import Worker, write

__all__ = ["SqliteDeadLetterBox"]

_COLUMNS: Final = (
    "letter_id, grp, topic, message_id, key, body, reason, error_type, attempts, failed_at, status,"
    " claimed_by, claimed_until"
)
_AWARE_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_NAIVE_EPOCH: Final = datetime(1970, 1, 1)
_MICROSECOND: Final = timedelta(microseconds=1)


def _order_of(failed_at: datetime) -> int:
    """Whole microseconds since the epoch: exact, unlike a float timestamp."""
    epoch = _NAIVE_EPOCH if failed_at.tzinfo is None else _AWARE_EPOCH
    return (failed_at - epoch) // _MICROSECOND


def _letter(row: tuple[Any, ...]) -> DeadLetter:
    (letter_id, group, topic, message_id, key, body, reason, error_type, attempts) = row[:9]
    return DeadLetter(
        letter_id=letter_id,
        group=group,
        topic=topic,
        message_id=message_id,
        key=key,
        body=bytes(body),
        reason=reason,
        error_type=error_type,
        attempts=int(attempts),
        failed_at=datetime.fromisoformat(row[9]),
        status=row[10],
        claimed_by=row[11],
        claimed_until=None if row[12] is None else datetime.fromisoformat(row[12]),
    )


class SqliteDeadLetterBox(LetterBoxFront):
    """Dead letters in the ``bus_dead_letters`` table."""

    def __init__(self, worker: Worker) -> None:
        # Once the bus is closed its worker refuses every call with ``BusClosed``.
        super().__init__(None)
        self._worker = worker

    async def _write(self, body: Callable[[sqlite3.Connection], Any]) -> Any:
        return await self._worker.run(lambda connection: write(connection, body))

    async def _put(self, letter: DeadLetter) -> None:
        order = _order_of(letter.failed_at)
        values = (
            letter.letter_id,
            letter.group,
            letter.topic,
            letter.message_id,
            letter.key,
            bytes(letter.body),
            letter.reason,
            letter.error_type,
            letter.attempts,
            letter.failed_at.isoformat(),
            letter.status,
            letter.claimed_by,
            None if letter.claimed_until is None else letter.claimed_until.isoformat(),
            order,
        )

        def body(connection: sqlite3.Connection) -> None:
            connection.execute(
                f"INSERT OR REPLACE INTO bus_dead_letters ({_COLUMNS}, failed_order)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                values,
            )
            connection.execute(
                "INSERT OR REPLACE INTO bus_dead_letter_marks (letter_id, failed_order)"
                " VALUES (?, ?)",
                (letter.letter_id, order),
            )

        await self._write(body)

    async def _letters(
        self, group: str | None, topic: str | None, after: str | None, limit: int
    ) -> list[DeadLetter]:

        def body(connection: sqlite3.Connection) -> list[DeadLetter]:
            clauses: list[str] = []
            values: list[object] = []
            if group is not None:
                clauses.append("grp = ?")
                values.append(group)
            if topic is not None:
                clauses.append("topic = ?")
                values.append(topic)
            if after is not None:
                mark = connection.execute(
                    "SELECT failed_order FROM bus_dead_letter_marks WHERE letter_id = ?",
                    (after,),
                ).fetchone()
                if mark is None:
                    raise DeadLetterNotFound(after)
                clauses.append("(failed_order, letter_id) > (?, ?)")
                values.extend((mark[0], after))
            where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
            rows = connection.execute(
                f"SELECT {_COLUMNS} FROM bus_dead_letters{where}"
                " ORDER BY failed_order, letter_id LIMIT ?",
                (*values, limit),
            ).fetchall()
            return [_letter(row) for row in rows]

        result: list[DeadLetter] = await self._worker.run(body)
        return result

    async def _get(self, letter_id: str) -> DeadLetter:
        def body(connection: sqlite3.Connection) -> DeadLetter:
            row = connection.execute(
                f"SELECT {_COLUMNS} FROM bus_dead_letters WHERE letter_id = ?", (letter_id,)
            ).fetchone()
            if row is None:
                raise DeadLetterNotFound(letter_id)
            return _letter(row)

        result: DeadLetter = await self._worker.run(body)
        return result

    async def _drop(self, letter_id: str) -> None:
        def body(connection: sqlite3.Connection) -> None:
            cursor = connection.execute(
                "DELETE FROM bus_dead_letters WHERE letter_id = ?", (letter_id,)
            )
            if cursor.rowcount == 0:
                raise DeadLetterNotFound(letter_id)

        await self._write(body)

    async def _request_retry(self, letter_id: str) -> None:
        def body(connection: sqlite3.Connection) -> None:
            row = connection.execute(
                "SELECT status FROM bus_dead_letters WHERE letter_id = ?", (letter_id,)
            ).fetchone()
            if row is None:
                raise DeadLetterNotFound(letter_id)
            if row[0] == "dead":
                connection.execute(
                    "UPDATE bus_dead_letters SET status = 'retry' WHERE letter_id = ?",
                    (letter_id,),
                )

        await self._write(body)

    async def _claim_retries(
        self, group: str, topic: str, limit: int, holder: str, lease: float
    ) -> list[DeadLetter]:

        def body(connection: sqlite3.Connection) -> list[DeadLetter]:
            # Under the write lock, so two claimers (in any processes) never take the
            # same letter. Claims are few: which ran out is judged here, not in SQL.
            now = utc_now()
            rows = connection.execute(
                f"SELECT {_COLUMNS} FROM bus_dead_letters"
                " WHERE grp = ? AND topic = ? AND status IN ('retry', 'claimed')"
                " ORDER BY failed_order, letter_id",
                (group, topic),
            )
            due = [letter for letter in map(_letter, rows) if claimable(letter, now)][:limit]
            taken = [claimed(letter, holder, now, lease) for letter in due]
            connection.executemany(
                "UPDATE bus_dead_letters SET status = 'claimed', claimed_by = ?,"
                " claimed_until = ? WHERE letter_id = ?",
                [
                    (holder, letter.claimed_until.isoformat(), letter.letter_id)
                    for letter in taken
                    if letter.claimed_until is not None
                ],
            )
            return taken

        result: list[DeadLetter] = await self._write(body)
        return result

    async def _count(self, group: str | None, topic: str | None) -> int:
        def body(connection: sqlite3.Connection) -> int:
            row = connection.execute(
                "SELECT count(*) FROM bus_dead_letters"
                " WHERE (? IS NULL OR grp = ?) AND (? IS NULL OR topic = ?)",
                (group, group, topic, topic),
            ).fetchone()
            return int(row[0])

        result: int = await self._worker.run(body)
        return result
