"""The SQL of publishing and of a group's progress through a partition.

Every function here runs on the worker thread inside one write transaction
(``_thread.write``), so what it reads and what it writes are one atomic
step even with other processes on the file.

A group's state per partition is ``committed`` (every sequence up to it is done) and
one ``bus_deliveries`` row per message past it that was delivered: its attempts, the
wall-clock moment it may be delivered again (the ack wait, or a nak's delay), and
whether it was acknowledged ahead of an earlier one.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Final

from eventcore.errors import InvalidInput
from eventcore.messaging.bus import Delivery, OutgoingMessage, partition_of

__all__ = [
    "FetchResult",
    "ack",
    "ensure_topic",
    "fetch",
    "nak",
    "newest_message",
    "publish",
    "reset_visibility",
]

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def _micros_to_datetime(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


def ensure_topic(connection: sqlite3.Connection, topic: str, partitions: int) -> int:
    """The topic's partition count, creating it with ``partitions`` if it is new."""
    connection.execute(
        "INSERT OR IGNORE INTO bus_topics (name, partitions) VALUES (?, ?)", (topic, partitions)
    )
    row = connection.execute(
        "SELECT partitions FROM bus_topics WHERE name = ?", (topic,)
    ).fetchone()
    return int(row[0])


def publish(
    connection: sqlite3.Connection, messages: Sequence[OutgoingMessage], partitions: int
) -> dict[str, int]:
    """Store the messages not stored yet; returns the partition count of each topic."""
    counts: dict[str, int] = {}
    heads: dict[tuple[str, int], int] = {}
    published_at = time.time_ns() // 1000
    insert = (
        "INSERT OR IGNORE INTO bus_messages"
        " (topic, partition, seq, message_id, key, body, published_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)"
    )
    for message in messages:
        topic = message.topic
        count = counts.get(topic)
        if count is None:
            count = counts[topic] = ensure_topic(connection, topic, partitions)
        partition = partition_of(message.key, count)
        head = heads.get((topic, partition))
        if head is None:
            row = connection.execute(
                "SELECT coalesce(max(seq), 0) FROM bus_messages WHERE topic = ? AND partition = ?",
                (topic, partition),
            ).fetchone()
            head = int(row[0])
        cursor = connection.execute(
            insert,
            (
                topic,
                partition,
                head + 1,
                message.message_id,
                message.key,
                bytes(message.body),
                published_at,
            ),
        )
        # Ignored (a duplicate message id): the sequence stays free, so no gap opens.
        heads[(topic, partition)] = head + cursor.rowcount
    return counts


def newest_message(connection: sqlite3.Connection) -> int:
    """The newest message's row id: a cheap way to see whether anyone published."""
    row = connection.execute("SELECT coalesce(max(id), 0) FROM bus_messages").fetchone()
    return int(row[0])


def held_partitions(connection: sqlite3.Connection, scope: str, member: str) -> set[int]:
    """The partitions ``member`` holds a live lease on right now."""
    rows = connection.execute(
        "SELECT partition FROM bus_leases WHERE scope = ? AND member = ? AND expires_at > ?",
        (scope, member, time.time()),
    ).fetchall()
    return {int(row[0]) for row in rows}


def reset_visibility(
    connection: sqlite3.Connection, group: str, topic: str, partitions: Iterable[int]
) -> None:
    """A new owner of these partitions delivers what the previous one left open at once."""
    connection.executemany(
        "UPDATE bus_deliveries SET visible_at = 0"
        " WHERE grp = ? AND topic = ? AND partition = ? AND acked = 0",
        [(group, topic, partition) for partition in partitions],
    )


def _committed(connection: sqlite3.Connection, group: str, topic: str, partition: int) -> int:
    row = connection.execute(
        "SELECT committed FROM bus_offsets WHERE grp = ? AND topic = ? AND partition = ?",
        (group, topic, partition),
    ).fetchone()
    return 0 if row is None else int(row[0])


class FetchResult:
    """What one fetch transaction found."""

    __slots__ = ("deliveries", "next_due")

    def __init__(self, deliveries: list[Delivery], next_due: float | None) -> None:
        self.deliveries = deliveries
        #: Wall-clock moment the earliest blocked partition unblocks by itself.
        self.next_due = next_due


_BLOCKED = (
    "SELECT min(visible_at) FROM bus_deliveries"
    " WHERE grp = ? AND topic = ? AND partition = ? AND seq > ? AND acked = 0"
    " AND visible_at > ?"
)
_PENDING = (
    "SELECT m.seq, m.message_id, m.key, m.body, m.published_at, coalesce(d.attempts, 0)"
    " FROM bus_messages m LEFT JOIN bus_deliveries d"
    " ON d.grp = ? AND d.topic = m.topic AND d.partition = m.partition AND d.seq = m.seq"
    " WHERE m.topic = ? AND m.partition = ? AND m.seq > ? AND coalesce(d.acked, 0) = 0"
    " ORDER BY m.seq LIMIT ?"
)
_HEAD = "SELECT coalesce(max(seq), 0) FROM bus_messages WHERE topic = ? AND partition = ?"
_DELIVERED = (
    "INSERT INTO bus_deliveries (grp, topic, partition, seq, attempts, visible_at)"
    " VALUES (?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (grp, topic, partition, seq) DO UPDATE"
    " SET attempts = excluded.attempts, visible_at = excluded.visible_at"
)


def fetch(
    connection: sqlite3.Connection,
    *,
    group: str,
    topic: str,
    partitions: Sequence[int],
    max_messages: int,
    ack_wait: float,
) -> FetchResult:
    """Deliver up to ``max_messages`` from ``partitions`` (in that order of preference),
    each partition's in sequence order, counting the attempt of each."""
    now = time.time()
    deliveries: list[Delivery] = []
    next_due: float | None = None
    for partition in partitions:
        room = max_messages - len(deliveries)
        if room <= 0:
            break
        committed = _committed(connection, group, topic, partition)
        blocked = connection.execute(
            _BLOCKED, (group, topic, partition, committed, now)
        ).fetchone()[0]
        if blocked is not None:
            # Something delivered earlier is still open (or nak'ed and waiting): the
            # partition gives nothing, so its keys are never handled out of order.
            next_due = blocked if next_due is None else min(next_due, blocked)
            continue
        rows = connection.execute(_PENDING, (group, topic, partition, committed, room)).fetchall()
        if not rows:
            continue
        visible_at = now + ack_wait
        connection.executemany(
            _DELIVERED,
            [(group, topic, partition, row[0], row[5] + 1, visible_at) for row in rows],
        )
        head = connection.execute(_HEAD, (topic, partition)).fetchone()[0]
        deliveries.extend(
            Delivery(
                topic=topic,
                message_id=message_id,
                key=key,
                body=body,
                partition=partition,
                sequence=seq,
                attempt=attempts + 1,
                published_at=_micros_to_datetime(published_at),
                behind=head - seq,
            )
            for seq, message_id, key, body, published_at, attempts in rows
        )
    return FetchResult(deliveries, next_due)


def ack(connection: sqlite3.Connection, group: str, topic: str, acked: dict[int, set[int]]) -> None:
    """Mark the sequences acknowledged (per partition) and move each partition's
    committed offset over every contiguous acknowledged sequence."""
    for partition, sequences in acked.items():
        head = connection.execute(_HEAD, (topic, partition)).fetchone()[0]
        if max(sequences) > head:
            raise InvalidInput(
                f"no message at partition {partition}, sequence {max(sequences)} of {topic!r}"
            )
    for partition, sequences in acked.items():
        committed = _committed(connection, group, topic, partition)
        fresh = [seq for seq in sequences if seq > committed]
        if not fresh:
            continue
        connection.executemany(
            "INSERT INTO bus_deliveries (grp, topic, partition, seq, attempts, visible_at, acked)"
            " VALUES (?, ?, ?, ?, 1, 0, 1)"
            " ON CONFLICT (grp, topic, partition, seq) DO UPDATE SET acked = 1",
            [(group, topic, partition, seq) for seq in fresh],
        )
        rows = connection.execute(
            "SELECT seq, acked FROM bus_deliveries"
            " WHERE grp = ? AND topic = ? AND partition = ? AND seq > ? ORDER BY seq",
            (group, topic, partition, committed),
        ).fetchall()
        advanced = committed
        for seq, is_acked in rows:
            if seq != advanced + 1 or not is_acked:
                break
            advanced = seq
        if advanced == committed:
            continue
        connection.execute(
            "DELETE FROM bus_deliveries WHERE grp = ? AND topic = ? AND partition = ? AND seq <= ?",
            (group, topic, partition, advanced),
        )
        connection.execute(
            "INSERT INTO bus_offsets (grp, topic, partition, committed) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (grp, topic, partition) DO UPDATE SET committed = excluded.committed",
            (group, topic, partition, advanced),
        )


def nak(
    connection: sqlite3.Connection,
    group: str,
    topic: str,
    partition: int,
    sequence: int,
    delay: float,
) -> None:
    """Deliver ``sequence`` and every open delivery after it again after ``delay``."""
    connection.execute(
        "UPDATE bus_deliveries SET visible_at = ?"
        " WHERE grp = ? AND topic = ? AND partition = ? AND seq >= ? AND acked = 0",
        (time.time() + delay, group, topic, partition, sequence),
    )
