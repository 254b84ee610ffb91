"""``SqliteConsumer``: one member of a consumer group on a topic of a ``SqliteBus``.

Ownership of partitions is ``PartitionAssignment`` over the file's leases, renewed by
a background task. A fetch takes one write transaction: it checks the leases are
still ours, reads each owned partition past its committed offset and counts the
attempts of what it hands out.

Waiting for messages: a publish in this process wakes the fetchers of its topics at
once (each consumer's ``Wakeup``), as does settling a delivery or a lease given up;
a publish by another process is seen by polling the newest message id, a cheap read,
every few milliseconds at first and less often while nothing comes.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable, Sequence
from typing import Final

from eventcore.errors import BusClosed, InvalidInput
from eventcore.leases import KeepAlive
from eventcore.messaging._backend import AssignedMember
from eventcore.messaging._input import check_delay, check_delivery, check_fetch
from eventcore.messaging._wakeup import Wakeup
from eventcore.messaging.assignment import PartitionAssignment
from eventcore.messaging.bus import Delivery
from eventcore.messaging.sqlite import _log as log
from eventcore.messaging.sqlite._thread import Worker, write

__all__ = ["SqliteConsumer"]

_logger = logging.getLogger(__name__)

#: Polling for other processes' publishes starts this often after a look found nothing,
#: and slows down by ``_POLL_GROWTH`` per empty poll to at most ``_POLL_MAX``: the
#: end-to-end latency between processes stays within a few tens of milliseconds.
_POLL_MIN: Final = 0.005
_POLL_MAX: Final = 0.025
_POLL_GROWTH: Final = 1.5
#: How often a waiting fetch looks at the assignment again (cheap unless it changes).
_REBALANCE_EVERY: Final = 0.1


class SqliteConsumer(AssignedMember):
    """Made by ``SqliteBus.consumer``."""

    def __init__(
        self,
        *,
        worker: Worker,
        check_bus_open: Callable[[], None],
        on_close: Callable[[SqliteConsumer], None],
        topic: str,
        group: str,
        partition_count: int,
        assignment: PartitionAssignment,
        ack_wait: float,
    ) -> None:
        self._worker = worker
        self._wakeup = Wakeup()
        self._check_bus_open = check_bus_open
        self._on_close = on_close
        self._topic = topic
        self._group = group
        self._partition_count = partition_count
        self._assignment = assignment
        self._ack_wait = ack_wait
        # Renewals and rebalances must not interleave: a renewal re-acquiring a lease
        # that a rebalance just released would hold it without anyone knowing.
        self._lock = asyncio.Lock()
        self._known: frozenset[int] = frozenset()
        # Partitions gained since the last fetch: their open deliveries come again now.
        self._gained: set[int] = set()
        self._rebalanced_at = float("-inf")
        # What this member handed out and has not settled: partition → sequence → attempt.
        self._unsettled: dict[int, dict[int, int]] = {}
        self._start_at = 0
        self._keep_alive = KeepAlive(
            assignment.renew,
            ttl=assignment.ttl,
            name=f"eventcore-sqlite-lease-{assignment.member}",
            lock=self._lock,
        )
        self._background: set[asyncio.Future[None]] = set()
        self._closed = False

    @property
    def topic(self) -> str:
        return self._topic

    def wake(self) -> None:
        """Make a waiting ``fetch`` look again now."""
        self._wakeup.fire()

    # --- lifecycle -----------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise BusClosed()
        self._check_bus_open()

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._on_close(self)
        self._wakeup.fire()
        await self._keep_alive.aclose()
        if self._worker.closed:
            return
        open_deliveries = [
            (self._group, self._topic, partition, seq)
            for partition, sequences in self._unsettled.items()
            for seq in sequences
        ]
        self._unsettled.clear()

        def expire(connection: sqlite3.Connection) -> None:
            connection.executemany(
                "UPDATE bus_deliveries SET visible_at = 0"
                " WHERE grp = ? AND topic = ? AND partition = ? AND seq = ? AND acked = 0",
                open_deliveries,
            )

        async with self._lock:
            if open_deliveries:
                await self._worker.run(lambda connection: write(connection, expire), durable=False)
            await self._assignment.leave()

    # --- fetching ------------------------------------------------------------------------

    async def fetch(self, max_messages: int, timeout: float) -> list[Delivery]:  # noqa: ASYNC109
        self._check_open()
        check_fetch(max_messages, timeout)
        deadline = time.monotonic() + timeout
        poll = _POLL_MIN
        look = True
        seen = -1
        due_at = float("inf")  # monotonic moment a blocked partition unblocks
        while True:
            # Taken before looking, so a publish made after the look still wakes us.
            changed = self._wakeup.current()
            due_to_rebalance = time.monotonic() - self._rebalanced_at >= _REBALANCE_EVERY
            if due_to_rebalance and await self._rebalance():
                look = True
            if look and self._known:
                deliveries, next_due, seen = await self._look(max_messages)
                if deliveries:
                    return deliveries
                due_at = float("inf") if next_due is None else time.monotonic() + next_due
                poll = _POLL_MIN
            look = False
            now = time.monotonic()
            if now >= deadline:
                return []
            wake_at = min(deadline, due_at, now + poll, self._rebalanced_at + _REBALANCE_EVERY)
            try:
                async with asyncio.timeout(max(wake_at - now, 0.0)):
                    await changed.wait()
                look = True
            except TimeoutError:
                self._check_open()
                if time.monotonic() >= due_at:
                    look = True
                elif self._known and time.monotonic() >= now + poll:
                    newest = await self._worker.run(log.newest_message, durable=False)
                    look = newest != seen
                    poll = min(poll * _POLL_GROWTH, _POLL_MAX)
            self._check_open()
            # A change signalled during the awaits after the wait timed out (the poll
            # above, a rebalance) set ``changed``, and the next round takes a fresh
            # event that will never be set for it: without this the fetch would sleep
            # through the change until ``due_at`` or its deadline.
            if changed.is_set():
                look = True

    async def _rebalance(self) -> bool:
        """Rebalance; True when partitions were gained."""
        async with self._lock:
            await self._assignment.rebalance()
        self._rebalanced_at = time.monotonic()
        owned = self._assignment.owned
        gained = owned - self._known
        self._gained |= gained
        self._gained &= owned
        self._known = owned
        return bool(gained)

    async def _look(self, max_messages: int) -> tuple[list[Delivery], float | None, int]:
        """One fetch transaction: (deliveries, seconds until a blocked partition
        unblocks or None, the newest message id)."""
        owned = sorted(self._known)
        self._start_at = (self._start_at + 1) % len(owned)
        # Rotating the first partition keeps a small ``max_messages`` from starving
        # the higher partitions.
        order = owned[self._start_at :] + owned[: self._start_at]
        gained = frozenset(self._gained)
        scope, member = self._assignment.scope, self.member
        group, topic, ack_wait = self._group, self._topic, self._ack_wait

        def body(connection: sqlite3.Connection) -> tuple[log.FetchResult, int, float]:
            held = log.held_partitions(connection, scope, member)
            log.reset_visibility(connection, group, topic, gained & held)
            result = log.fetch(
                connection,
                group=group,
                topic=topic,
                partitions=[p for p in order if p in held],
                max_messages=max_messages,
                ack_wait=ack_wait,
            )
            return result, log.newest_message(connection), time.time()

        job = asyncio.ensure_future(
            self._worker.run(lambda connection: write(connection, body), durable=False)
        )
        try:
            result, newest, now = await asyncio.shield(job)
        except asyncio.CancelledError:
            # The transaction goes on without us: what it hands out nobody will see, so
            # give it back at once rather than leave its partitions blocked for ack_wait.
            job.add_done_callback(self._give_back)
            raise
        self._gained -= gained
        for delivery in result.deliveries:
            self._unsettled.setdefault(delivery.partition, {})[delivery.sequence] = delivery.attempt
        next_due = None if result.next_due is None else max(result.next_due - now, 0.0)
        return result.deliveries, next_due, newest

    def _give_back(self, job: asyncio.Future[tuple[log.FetchResult, int, float]]) -> None:
        if job.cancelled() or job.exception() is not None or self._worker.closed:
            return
        lost = [
            (self._group, self._topic, d.partition, d.sequence, d.attempt)
            for d in job.result()[0].deliveries
        ]
        if not lost:
            return

        def expire(connection: sqlite3.Connection) -> None:
            connection.executemany(
                "UPDATE bus_deliveries SET visible_at = 0 WHERE grp = ? AND topic = ?"
                " AND partition = ? AND seq = ? AND attempts = ? AND acked = 0",
                lost,
            )

        task = asyncio.ensure_future(self._worker.run(lambda c: write(c, expire), durable=False))
        self._background.add(task)
        task.add_done_callback(self._settled_in_background)

    def _settled_in_background(self, task: asyncio.Future[None]) -> None:
        self._background.discard(task)
        self._wakeup.fire()
        if not task.cancelled() and task.exception() is not None:
            _logger.warning("giving back a cancelled fetch failed: %s", task.exception())

    # --- settling ------------------------------------------------------------------------

    def _check_delivery(self, given: object) -> Delivery:
        delivery = check_delivery(given, self._topic, self._partition_count)
        if delivery.sequence < 1:
            raise InvalidInput(
                f"no message at partition {delivery.partition}, sequence {delivery.sequence}"
            )
        return delivery

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        self._check_open()
        acked: dict[int, set[int]] = {}
        for delivery in deliveries:
            self._check_delivery(delivery)
            acked.setdefault(delivery.partition, set()).add(delivery.sequence)
        if not acked:
            return
        group, topic = self._group, self._topic
        await self._worker.run(
            lambda connection: write(
                connection, lambda connection: log.ack(connection, group, topic, acked)
            ),
            durable=False,
        )
        for partition, sequences in acked.items():
            open_ones = self._unsettled.get(partition)
            if open_ones is not None:
                for seq in sequences:
                    open_ones.pop(seq, None)
        # A fetch of this member waiting meanwhile may find its partitions unblocked.
        self._wakeup.fire()

    async def nak(self, delivery: Delivery, delay: float = 0.0) -> None:
        self._check_open()
        self._check_delivery(delivery)
        check_delay(delay)
        if delivery.partition not in self._assignment.owned:
            return  # no longer ours: the new owner delivers it again anyway
        open_ones = self._unsettled.get(delivery.partition, {})
        if open_ones.get(delivery.sequence) != delivery.attempt:
            return  # acked already, or an older delivery of a message sent again since
        group, topic = self._group, self._topic
        partition, sequence = delivery.partition, delivery.sequence
        await self._worker.run(
            lambda connection: write(
                connection,
                lambda connection: log.nak(connection, group, topic, partition, sequence, delay),
            ),
            durable=False,
        )
        for seq in [s for s in open_ones if s >= sequence]:
            del open_ones[seq]
        self._wakeup.fire()
