"""``KeepAlive``: renew a lease in the background, on one schedule for every holder.

A lease lives ``ttl`` seconds from its last renewal. The renewal runs every quarter of
that: ``PartitionAssignment`` asks for one at least every ``ttl / 3``, and sleeping
exactly that long, plus the renewal's own round trips, would overshoot it.

A renewal that fails with an outage (``BusError``, ``StoreError``) is tried again next
round and kept as ``last_error``; the lease runs out meanwhile if the outage lasts,
which is what should happen to a holder nobody can see. ``lost`` says so: no renewal
has succeeded for ``ttl`` seconds. A closed bus or store (``BusClosed``,
``StoreClosed``) ends the renewals: nothing would reopen it. Anything else is a defect;
it ends the renewals too and is kept as ``failure``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Final

from eventcore.errors import BusClosed, BusError, StoreClosed, StoreError

__all__ = ["RENEWAL_FRACTION", "KeepAlive"]

_logger = logging.getLogger(__name__)

#: The part of a lease's time to live between two renewals.
RENEWAL_FRACTION: Final = 0.25


class KeepAlive:
    """Calls ``renew`` every ``ttl * RENEWAL_FRACTION`` seconds from ``start()`` until
    ``aclose()``. ``lock``, if given, is held around each renewal (so it cannot
    interleave with a rebalance that releases what it would re-acquire)."""

    def __init__(
        self,
        renew: Callable[[], Awaitable[None]],
        *,
        ttl: float,
        name: str,
        lock: asyncio.Lock | None = None,
    ) -> None:
        self._renew = renew
        self._ttl = ttl
        self._name = name
        self._lock = lock
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._renewed_at = time.monotonic()
        self.last_error: BaseException | None = None
        #: The defect that ended the renewals, if one did.
        self.failure: BaseException | None = None

    @property
    def lost(self) -> bool:
        """No renewal has succeeded for a whole ``ttl``: the lease has run out."""
        return time.monotonic() - self._renewed_at >= self._ttl

    def renewed(self) -> None:
        """Note a renewal made outside the schedule (the first one, when joining)."""
        self._renewed_at = time.monotonic()

    def start(self) -> None:
        if self._task is None and not self._closing:
            self._renewed_at = time.monotonic()
            self._task = asyncio.get_running_loop().create_task(self._forever(), name=self._name)

    async def _forever(self) -> None:
        # ``while not closing`` rather than ``while True``: some drivers (nats-py) swallow
        # a CancelledError that lands inside their calls, so a renewal cancelled mid-call
        # carries on, and only this flag ends the loop.
        while not self._closing:
            await asyncio.sleep(self._ttl * RENEWAL_FRACTION)
            if self._closing:
                return
            try:
                if self._lock is None:
                    await self._renew()
                else:
                    async with self._lock:
                        await self._renew()
            except (BusClosed, StoreClosed):
                return
            except (BusError, StoreError) as error:
                self.last_error = error
                _logger.warning("renewing the lease of %s failed: %s", self._name, error)
                continue
            except Exception as error:
                self.failure = error
                _logger.exception("renewing the lease of %s failed for good", self._name)
                return
            self._renewed_at = time.monotonic()
            self.last_error = None

    async def aclose(self) -> None:
        """Stop renewing; returns within one round even if a renewal swallows the cancel."""
        self._closing = True
        task = self._task
        if task is None or task.done():
            return
        task.cancel()
        await asyncio.wait({task}, timeout=self._ttl)
