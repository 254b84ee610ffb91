"""The service's intake: the gate every new piece of work passes (an HTTP command, a
stream read), so that draining can close it and then wait for what got through.

``admit()`` is a context manager around one piece of work: it raises
``ServiceDraining`` once the gate is closed, and counts the work in flight otherwise.
``close()`` shuts the gate; ``drained(timeout)`` waits until nothing is in flight.
Nothing is polled: the last piece of work to leave wakes the waiter.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

from eventcore.service.errors import ServiceDraining

__all__ = ["Intake"]


class Intake:
    def __init__(self, service: str) -> None:
        self._service = service
        self._open = True
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def is_open(self) -> bool:
        return self._open

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @contextmanager
    def admit(self) -> Iterator[None]:
        """Count the block as work in flight; ``ServiceDraining`` if the gate is shut."""
        if not self._open:
            raise ServiceDraining(self._service)
        self._in_flight += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._idle.set()

    def close(self) -> None:
        """Take no new work (idempotent); work already admitted carries on."""
        self._open = False

    async def drained(self, timeout: float) -> bool:  # noqa: ASYNC109
        """Wait until no work is in flight, at most ``timeout`` seconds; True if none is."""
        try:
            async with asyncio.timeout(timeout):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True
