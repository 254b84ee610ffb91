"""One lifecycle for every long-running loop: the ``Worker`` protocol.

The relay, the subscriber and the projection runner (and every loop built later: saga
runners, timers, the hub, registry heartbeats) are driven the same way:

- ``await worker.run()`` does the work until ``stop()``; it returns once stopped and
  raises what ended it otherwise. A closed store or bus (``StoreClosed``, ``BusClosed``)
  ends it with that error: nothing would reopen the resource, so waiting it out would
  only hide the mistake.
- ``worker.stop()`` asks ``run`` to return after the work in hand. It may be called at
  any time, more than once, before ``run`` (which then returns at once) or after it.
- ``worker.status()`` is a snapshot of what the worker has done, of its own type.
- ``await worker.ready()`` returns once the worker has loaded what it starts from and
  is doing its work (each worker says what that means for it). It never hangs on a
  worker that cannot get there: if ``run`` fails first, ``ready`` raises that same
  error; if the worker is stopped first, it raises ``WorkerStopped``. Once ready it
  stays ready, whatever ends ``run`` later.

``ready`` is a coroutine method rather than an ``asyncio.Event``: an event cannot carry
the error that kept the worker from getting ready, and a waiter would hang on it.

``running(*workers)`` runs several workers for the length of an ``async with`` block;
``stopped_within(stopping, seconds)`` is the pause of a worker's loop that ``stop()`` cuts
short, and ``unless_stopped(work, stopping)`` the wait for one piece of work (a fetch) that
it cuts short.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable
from typing import Any, Protocol, TypeVar, runtime_checkable

from eventcore.errors import WorkerStopped

__all__ = ["Readiness", "Worker", "running", "stopped_within", "unless_stopped"]

_Status = TypeVar("_Status", covariant=True)
_T = TypeVar("_T")


@runtime_checkable
class Worker(Protocol[_Status]):
    """A long-running loop with one lifecycle; see the module's docs."""

    async def run(self) -> None:
        """Work until ``stop()``; raise what ended the work otherwise."""
        ...

    def stop(self) -> None:
        """Ask ``run`` to return; idempotent, safe before and after ``run``."""
        ...

    def status(self) -> _Status:
        """What the worker has done so far."""
        ...

    async def ready(self) -> None:
        """Return once the worker is doing its work; raise what kept it from that."""
        ...


class Readiness:
    """A worker's ready signal: set once, or failed with the error that kept the worker
    from getting ready. Workers hold one and delegate ``ready()`` to ``wait()``."""

    def __init__(self, worker: str) -> None:
        self._worker = worker
        self._settled = asyncio.Event()
        self._error: BaseException | None = None

    @property
    def is_ready(self) -> bool:
        return self._settled.is_set() and self._error is None

    def set(self) -> None:
        """The worker is ready (nothing if it was already ready, or failed)."""
        self._settled.set()

    def fail(self, error: BaseException) -> None:
        """The worker will not get ready: waiters get ``error`` (nothing if it was
        already ready or failed)."""
        if not self._settled.is_set():
            self._error = error
            self._settled.set()

    def stopped(self) -> None:
        """The worker was stopped: waiters get ``WorkerStopped`` unless it was ready."""
        self.fail(WorkerStopped(self._worker))

    async def wait(self) -> None:
        await self._settled.wait()
        if self._error is not None:
            raise self._error


@contextlib.asynccontextmanager
async def running(*workers: Worker[Any]) -> AsyncIterator[None]:
    """Run ``workers`` for the length of the block: it starts once every one is ready,
    and on leaving it each is stopped and its ``run`` awaited.

    A worker that fails before all are ready stops the others and its error is raised
    here; one that fails inside the block has its error raised when the block ends
    (with the others stopped). Leaving the block by an error of its own stops every
    worker and raises that error.
    """
    tasks = [asyncio.create_task(worker.run()) for worker in workers]
    readying = asyncio.gather(*(worker.ready() for worker in workers))
    try:
        # Whichever comes first: everyone ready, or a run that ended early.
        watched: set[asyncio.Future[Any]] = {readying, *tasks}
        await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
        if not readying.done():
            raise WorkerStopped("a worker whose run() returned before it was ready")
        readying.result()
        yield
    finally:
        for worker in workers:
            worker.stop()
        readying.cancel()
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        # Retrieved, so an error that settled it is not reported as never seen.
        await asyncio.gather(readying, return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome


async def stopped_within(stopping: asyncio.Event, seconds: float) -> bool:
    """Wait ``seconds``, or less if ``stopping`` is set meanwhile; True if it was."""
    if stopping.is_set():
        return True
    try:
        async with asyncio.timeout(seconds):
            await stopping.wait()
    except TimeoutError:
        return False
    return True


async def unless_stopped(work: Awaitable[_T], stopping: asyncio.Event) -> _T | None:
    """``work``'s result, or None if ``stopping`` is set first. Work cut short is
    cancelled and waited for, so that it does not outlive its caller (a fetch, say,
    would otherwise run on past the consumer it fetches from)."""
    working = asyncio.ensure_future(work)
    waiting = asyncio.ensure_future(stopping.wait())
    try:
        await asyncio.wait({working, waiting}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiting.cancel()
        if not working.done():
            working.cancel()
            await asyncio.gather(working, return_exceptions=True)
    if working.cancelled():
        return None
    return working.result()
