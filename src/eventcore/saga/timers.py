"""``SagaTimer``: fires the sagas' deadlines when they fall due.

A deadline is never kept anywhere but in the saga's stream: a step's ``timeout_at``, the
saga's ``deadline_at``, a failed compensation's ``retry_at``. The timer learns them from
the ``SagaIndex`` (``SagaState.deadlines()`` of every saga it folds), keeps them in a
heap, and when one falls due hands ``DeadlineFired`` to the saga through the driver.
After a restart the index reads the log again, so a deadline that fell due while the
process was down is in the heap at once, and fires at once.

Firing is idempotent (``decide`` ignores a deadline that is cancelled, already fired or
not yet due), so every instance of the owning service runs a timer: the first to append
wins, the others find nothing to do. A deadline whose firing fails (the store is down)
is tried again a moment later rather than forgotten.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging

import msgspec

from eventcore.errors import InvalidInput, SagaNotFound, StoreClosed
from eventcore.lifecycle import Readiness
from eventcore.saga.driver import SagaDriver
from eventcore.saga.index import SagaIndex
from eventcore.saga.inputs import DeadlineFired
from eventcore.saga.state import SagaState
from eventcore.types import StreamId

__all__ = ["SagaTimer", "TimerStatus"]

_logger = logging.getLogger(__name__)

#: How long a deadline whose firing failed waits before it is tried again, in seconds.
_REFIRE_AFTER = 0.5


class TimerStatus(msgspec.Struct, frozen=True, kw_only=True):
    """``scheduled``: deadlines waiting; ``fired``: handed to a saga (``changed``: of
    them, those that moved it); ``failed``: firings that raised and were tried again."""

    scheduled: int
    fired: int
    changed: int
    failed: int


class SagaTimer:
    """Fires the deadlines of the sagas in ``index`` through ``driver``; a ``Worker``,
    ready once the index is (every deadline in the log is scheduled then)."""

    def __init__(self, index: SagaIndex, driver: SagaDriver, *, concurrency: int = 64) -> None:
        self._index = index
        self._driver = driver
        self._heap: list[tuple[float, int, StreamId, str]] = []
        self._scheduled: set[tuple[StreamId, str, float]] = set()
        self._order = itertools.count()
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._readiness = Readiness("saga timer")
        self._limit = asyncio.Semaphore(concurrency)
        self._firing: set[asyncio.Task[None]] = set()
        self._fired = self._changed = self._failed = 0
        self._closed: StoreClosed | None = None
        index.listen(self._schedule)

    def _schedule(self, stream: StreamId, state: SagaState) -> None:
        earliest = self._heap[0][0] if self._heap else None
        for key, at in state.deadlines().items():
            self._push(stream, key, at)
        if self._heap and (earliest is None or self._heap[0][0] < earliest):
            self._wake.set()

    def _push(self, stream: StreamId, key: str, at: float) -> None:
        if (stream, key, at) in self._scheduled:
            return
        self._scheduled.add((stream, key, at))
        heapq.heappush(self._heap, (at, next(self._order), stream, key))

    def status(self) -> TimerStatus:
        return TimerStatus(
            scheduled=len(self._heap),
            fired=self._fired,
            changed=self._changed,
            failed=self._failed,
        )

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    async def ready(self) -> None:
        await self._readiness.wait()

    async def run(self) -> None:
        try:
            if not self._stopping.is_set():
                stopping = asyncio.ensure_future(self._stopping.wait())
                indexed = asyncio.ensure_future(self._index.ready())
                try:
                    await asyncio.wait({stopping, indexed}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    stopping.cancel()
                    indexed.cancel()
                if indexed.done() and not indexed.cancelled() and indexed.exception() is None:
                    self._readiness.set()
                    await self._loop()
            if self._closed is not None:
                raise self._closed
        except BaseException as error:
            self._readiness.fail(error)
            raise
        finally:
            self._readiness.stopped()
            for task in self._firing:
                task.cancel()
            await asyncio.gather(*self._firing, return_exceptions=True)

    async def _loop(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()
            now = self._driver.now()
            while self._heap and self._heap[0][0] <= now:
                at, _, stream, key = heapq.heappop(self._heap)
                self._scheduled.discard((stream, key, at))
                state = self._index.get(stream)
                if state is not None and state.deadlines().get(key) != at:
                    continue  # cancelled or moved since: the index has the saga as it is
                await self._limit.acquire()
                task = asyncio.create_task(self._fire(stream, key, at))
                self._firing.add(task)
                task.add_done_callback(self._firing.discard)
            wait = self._heap[0][0] - now if self._heap else None
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wake.wait()

    async def _fire(self, stream: StreamId, key: str, at: float) -> None:
        try:
            decision = await self._driver.apply(stream, DeadlineFired(key=key))
        except SagaNotFound:
            return
        except InvalidInput as error:
            # The saga refuses it, or no definition here runs its type: firing it again
            # would be refused again.
            _logger.warning("saga %s: deadline %s was not fired: %s", stream, key, error)
            return
        except StoreClosed as error:
            # Nothing reopens it: end the timer with it, as every worker does.
            self._closed = error
            self.stop()
        except Exception as error:
            self._failed += 1
            _logger.warning(
                "saga %s: deadline %s could not be fired (tried again in %g s): %r",
                stream,
                key,
                _REFIRE_AFTER,
                error,
            )
            self._driver.forget(stream)
            await asyncio.sleep(_REFIRE_AFTER)
            self._push(stream, key, at)
            self._wake.set()
        else:
            self._fired += 1
            if decision.changed:
                self._changed += 1
        finally:
            self._limit.release()
