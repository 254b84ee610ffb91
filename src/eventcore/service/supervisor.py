"""A worker kept running: ``Supervised`` makes a worker, runs it, and when its ``run``
fails makes a fresh one after a backoff, for as long as the service runs.

A crashed worker is rebuilt rather than run again because a worker's ``run`` is not
promised to be re-entrant (its readiness, for one, is settled once). The backoff doubles
from ``backoff[0]`` up to ``backoff[1]`` with jitter, and starts over once an instance
got ready, so one crash an hour does not wait as long as a crash loop does.

``Supervised`` is itself a ``Worker``: ready once its first instance is ready (and it
stays so, as the protocol says), stopped by ``stop()``; its ``status()`` is a
``WorkerHealth`` that says what the current instance is doing and how often it crashed.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from typing import Any, Literal

import msgspec

from eventcore.lifecycle import Readiness, Worker, stopped_within

__all__ = ["DEFAULT_BACKOFF", "Supervised", "WorkerHealth", "WorkerState"]

logger = logging.getLogger("eventcore.service")

#: (first delay, longest delay) in seconds between a crash and the next start.
DEFAULT_BACKOFF = (0.1, 30.0)

#: ``starting``: an instance runs but is not ready yet; ``ready``: it does its work;
#: ``restarting``: the last one crashed and the next waits out its backoff;
#: ``stopped``: ``stop()`` was called and the instance returned.
WorkerState = Literal["starting", "ready", "restarting", "stopped"]


class WorkerHealth(msgspec.Struct, frozen=True, kw_only=True):
    """One supervised worker: ``status`` is the current instance's own ``status()``
    (None between instances); ``last_error`` the latest crash as ``"Type: message"``."""

    name: str
    kind: str
    state: WorkerState
    restarts: int
    last_error: str | None
    singleton: bool = False
    status: Any = None

    @property
    def ready(self) -> bool:
        return self.state == "ready"


class Supervised:
    """Runs the workers ``make`` builds, one at a time, rebuilding after a crash."""

    def __init__(
        self,
        name: str,
        kind: str,
        make: Callable[[], Worker[Any]],
        *,
        backoff: tuple[float, float] = DEFAULT_BACKOFF,
        singleton: bool = False,
        rng: random.Random | None = None,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.name = name
        self.kind = kind
        self.singleton = singleton
        self._make = make
        self._backoff = backoff
        self._rng = rng or random.Random()
        self._readiness = Readiness(name)
        self._stopping = asyncio.Event()
        self._current: Worker[Any] | None = None
        self._state: WorkerState = "starting"
        self._restarts = 0
        self._last_error: str | None = None
        #: Called after each change of state (the service sums them up into its health).
        self._on_change = on_change

    @property
    def current(self) -> Worker[Any] | None:
        """The instance running now (None before the first and between crashes)."""
        return self._current

    async def run(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            self._set("starting")
            watching: asyncio.Task[None] | None = None
            try:
                # A factory that raises is a crash like any other: the next try may find
                # what it needs (a target that was down).
                worker = self._make()
                self._current = worker
                watching = asyncio.create_task(self._watch_ready(worker))
                if self._stopping.is_set():
                    worker.stop()
                await worker.run()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                self._last_error = f"{type(error).__name__}: {error}"
                if self._stopping.is_set():
                    break
                if self._was_ready():
                    failures = 0
                failures += 1
                self._restarts += 1
                self._set("restarting")
                self._current = None
                delay = self._delay(failures)
                logger.warning(
                    "worker %s crashed (%s); restart %d in %.2fs",
                    self.name,
                    self._last_error,
                    self._restarts,
                    delay,
                )
                await stopped_within(self._stopping, delay)
                continue
            finally:
                if watching is not None:
                    watching.cancel()
                    await asyncio.gather(watching, return_exceptions=True)
            # ``run`` returned: the instance was stopped (by us, or by itself).
            break
        self._set("stopped")
        self._readiness.stopped()

    async def _watch_ready(self, worker: Worker[Any]) -> None:
        try:
            await worker.ready()
        except Exception:
            # What kept it from ready also ends its run, and the run's error is the one kept.
            return
        self._set("ready")
        self._readiness.set()

    def _set(self, state: WorkerState) -> None:
        changed = state != self._state
        self._state = state
        if changed and self._on_change is not None:
            self._on_change()

    def _was_ready(self) -> bool:
        # A method, not an inline test: the watcher task changes the state meanwhile.
        return self._state == "ready"

    def _delay(self, failures: int) -> float:
        first, longest = self._backoff
        ceiling = min(longest, first * 2 ** (failures - 1))
        # Full jitter in the upper half: instances that crashed together restart apart.
        return float(ceiling / 2 + self._rng.random() * ceiling / 2)

    def stop(self) -> None:
        self._stopping.set()
        if self._current is not None:
            self._current.stop()

    async def ready(self) -> None:
        await self._readiness.wait()

    def status(self) -> WorkerHealth:
        current = self._current
        return WorkerHealth(
            name=self.name,
            kind=self.kind,
            state=self._state,
            restarts=self._restarts,
            last_error=self._last_error,
            singleton=self.singleton,
            status=None if current is None else current.status(),
        )
