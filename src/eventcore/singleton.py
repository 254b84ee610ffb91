"""``Singleton``: run a worker on exactly one instance of a service at a time.

Every instance of a service builds the same ``Singleton(name, leases, make_worker)``
and runs it like any other ``Worker``. Each one competes for one lease (partition 0 of
the scope ``singleton.<name>`` in ``leases``); the instance that holds it is the
*leader*: it builds the inner worker with ``make_worker()`` and runs it. The others are
*followers*: they ask for the lease again every quarter of its time to live, and one
of them takes over when the leader lets it go or dies.

How leadership ends:

* ``stop()`` (a clean shutdown): the inner worker is stopped, its ``run`` awaited (the
  lease is renewed meanwhile), then the lease is released, so a follower takes over at
  its next look instead of waiting out the time to live.
* a kill: nobody renews the lease; it runs out after ``ttl`` and a follower takes over
  then. The inner worker starts from what it saved (a ``ProjectionRunner`` from its
  checkpoints).
* the lease is lost while the process lives (renewals failing in an outage, or
  another member holding the claim): the inner worker is stopped, and cancelled if
  it has not stopped soon after; the instance goes back to following.

Two leaders must not work at once, including when the old one does not know yet that
its lease ran out (a process paused, a slow network). So the leader does not wait for
the lease to run out: it counts the lease as valid only until ``(1 - SAFETY_FRACTION)``
of the ttl after the start of its last successful renewal (measured before the request
went out, so the claim, whose expiry the backend computes from a later clock reading,
lives at least that long). When that moment passes without a newer renewal, it stops
the inner worker, and cancels it ``STOP_GRACE_FRACTION`` of the ttl later: the rest
of the margin is for clocks that disagree (the NATS backend compares the clocks of
the members' machines) and for the event loop's own delay in noticing.

What remains is a process that is frozen (``SIGSTOP``, a VM paused) for longer than
the margin between two steps of its inner worker: it cannot notice anything while
frozen, and a lease alone cannot fence it. Work that must never be done twice needs
a fence where it is written. Projections have one: a target commits a batch only if
the checkpoint it was read from is still the one stored, in the batch's own
transaction (``CheckpointMoved`` otherwise, with nothing written, and the runner
reloads), so of two overlapping runners only one applies each event.

Why this module sits with the plumbing (beside ``lifecycle`` and ``leases``): it needs
nothing but a ``Leases``, a ``Worker`` and the instrumentation seam, so every layer
above may make its loops single-leader (a projection runner, a relay, a saga's timer
worker) and the runtime can wrap any worker it runs.

Status (``status()``): the role (``leader``, ``follower``, ``stopped``), the member
that holds the lease as last seen, how many times this instance has led, and the inner
worker's own status while it leads. Leadership changes are reported through the
instrumentation seam (``Hooks.leadership_changed``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import re
import socket
import time
import uuid
from collections.abc import Callable
from typing import Any, Final, Generic, TypeVar

import msgspec

from eventcore.errors import BusClosed, BusError, InvalidInput, StoreClosed, StoreError
from eventcore.instrumentation import Hooks, LeadershipChanged, resolve
from eventcore.leases import RENEWAL_FRACTION, Leases
from eventcore.leases.protocol import ClaimHolders, check_ttl
from eventcore.lifecycle import Readiness, Worker, stopped_within, unless_stopped

__all__ = [
    "DEFAULT_TTL",
    "FOLLOWER",
    "LEADER",
    "SAFETY_FRACTION",
    "STOPPED",
    "STOP_GRACE_FRACTION",
    "Singleton",
    "SingletonStatus",
]

_logger = logging.getLogger(__name__)

S = TypeVar("S")

#: Seconds the lease lives without renewal: how soon a follower takes over from a
#: leader that died.
DEFAULT_TTL: Final = 10.0
#: The part of the ttl a leader never counts on: it stops its worker once no renewal
#: has succeeded for ``(1 - SAFETY_FRACTION) * ttl``.
SAFETY_FRACTION: Final = 1 / 3
#: How long (part of the ttl) a worker stopped for a lost lease has to return before
#: it is cancelled; smaller than ``SAFETY_FRACTION``, so it is gone before the lease.
STOP_GRACE_FRACTION: Final = 1 / 6

LEADER: Final = "leader"
FOLLOWER: Final = "follower"
STOPPED: Final = "stopped"

# Kept as it is in the lease's scope when safe in a NATS KV key (dot-separated tokens).
_SAFE = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*")
_MAX_NAME = 200


def _scope(name: str) -> str:
    """The lease scope of singleton ``name``: ``singleton.<name>``, with a name that a
    KV key could not hold base64url-encoded behind ``=`` (no safe name starts so)."""
    if _SAFE.fullmatch(name):
        return f"singleton.{name}"
    encoded = base64.urlsafe_b64encode(name.encode()).decode().rstrip("=")
    return f"singleton.={encoded}"


class SingletonStatus(msgspec.Struct, Generic[S], frozen=True, kw_only=True):
    """``role``: ``leader``, ``follower`` or ``stopped``; ``holder``: the member that
    held the lease when this instance last looked (itself while it leads; None when
    nobody did, or the backend cannot tell); ``terms``: how many times this instance
    has become leader; ``since``: wall-clock time of the last change of role;
    ``worker``: the inner worker's status while this instance leads."""

    name: str
    member: str
    role: str
    holder: str | None
    terms: int
    since: float
    worker: S | None
    last_error: str | None


def default_member() -> str:
    """A member name no other process shares: host, process id and a random part."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


class Singleton(Generic[S]):
    """Run the worker ``make_worker()`` builds on one instance at a time (module doc).

    ``name`` names the work (every instance uses the same one, e.g. the service's and
    the projection's names), up to 200 printable characters. ``member`` names this
    instance (default: host, pid and a random part). ``ttl``: seconds the lease lives
    without renewal. ``make_worker`` is called each time this instance becomes leader;
    a worker is never run twice."""

    def __init__(
        self,
        name: str,
        leases: Leases,
        make_worker: Callable[[], Worker[S]],
        *,
        ttl: float = DEFAULT_TTL,
        member: str | None = None,
        hooks: Hooks | None = None,
    ) -> None:
        if (
            not isinstance(name, str)
            or not name.strip()
            or len(name) > _MAX_NAME
            or not name.isprintable()
        ):
            raise InvalidInput(
                f"a singleton's name is 1-{_MAX_NAME} printable characters, got {name!r}"
            )
        if member is not None and (not isinstance(member, str) or not member.strip()):
            raise InvalidInput(f"member must be a non-empty string, got {member!r}")
        self._ttl = check_ttl(ttl)
        self._name = name
        self._scope = _scope(name)
        self._leases = leases
        self._make_worker = make_worker
        self._member = member if member is not None else default_member()
        self._hooks = resolve(hooks, "leadership_changed")
        self._stopping = asyncio.Event()
        self._readiness = Readiness(f"singleton {name!r}")
        self._role = FOLLOWER
        self._since = time.time()
        self._holder: str | None = None
        self._terms = 0
        self._worker: Worker[S] | None = None
        self._last_error: BaseException | None = None
        #: Monotonic time until which the lease is counted on (see the module doc).
        self._valid_until = 0.0
        self._lost: str | None = None
        self._lost_event = asyncio.Event()
        self._renewing = False

    @property
    def name(self) -> str:
        return self._name

    @property
    def member(self) -> str:
        return self._member

    @property
    def is_leader(self) -> bool:
        return self._role == LEADER

    def stop(self) -> None:
        """Stop the inner worker (if leading), release the lease, and return from ``run``."""
        self._stopping.set()
        self._readiness.stopped()
        worker = self._worker
        if worker is not None:
            worker.stop()

    async def ready(self) -> None:
        """Return once this instance knows its part: leader with its worker ready, or
        follower (another member holds the lease)."""
        await self._readiness.wait()

    def status(self) -> SingletonStatus[S]:
        worker = self._worker
        return SingletonStatus(
            name=self._name,
            member=self._member,
            role=self._role,
            holder=self._holder,
            terms=self._terms,
            since=self._since,
            worker=worker.status() if worker is not None else None,
            last_error=None if self._last_error is None else repr(self._last_error),
        )

    async def run(self) -> None:
        """Follow, lead when the lease is ours, until ``stop()``; raises what the inner
        worker raised (after releasing the lease), or a closed bus or store."""
        try:
            while not self._stopping.is_set():
                if await self._claim():
                    await self._lead()
                    continue
                await stopped_within(self._stopping, self._ttl * RENEWAL_FRACTION)
        except BaseException as error:
            self._readiness.fail(error)
            raise
        finally:
            self._become(STOPPED, None)

    # --- following ---------------------------------------------------------------------

    async def _claim(self) -> bool:
        """Ask for the lease once; True if this instance holds it now."""
        requested = time.monotonic()
        try:
            won = await unless_stopped(
                self._leases.acquire(self._scope, 0, self._member, self._ttl), self._stopping
            )
        except (BusClosed, StoreClosed):
            raise
        except (BusError, StoreError) as error:
            self._last_error = error
            _logger.warning("singleton %s: cannot ask for the lease: %s", self._name, error)
            return False
        if won is None:
            # Stopped while asking: the claim may have been written all the same, and
            # is given back rather than left to run out while a follower waits.
            await self._release()
            return False
        if not won:
            # Someone else leads: this instance knows its part, following.
            self._holder = await self._current_holder()
            self._readiness.set()
            return False
        self._valid_until = requested + self._ttl * (1 - SAFETY_FRACTION)
        self._last_error = None
        return True

    async def _current_holder(self) -> str | None:
        leases = self._leases
        if not isinstance(leases, ClaimHolders):
            return None
        try:
            return await leases.holder(self._scope, 0)
        except (BusError, StoreError):
            return None

    # --- leading -----------------------------------------------------------------------

    async def _lead(self) -> None:
        self._lost = None
        self._lost_event.clear()
        self._renewing = True
        self._terms += 1
        self._become(LEADER, "acquired")
        try:
            worker = self._make_worker()
        except BaseException:
            await self._release()
            self._become(FOLLOWER, "worker failed")
            raise
        self._worker = worker
        renewing = asyncio.create_task(self._renew_forever(), name=f"singleton {self._name}")
        readying = asyncio.create_task(self._ready_with(worker))
        running = asyncio.create_task(worker.run(), name=f"singleton {self._name} worker")
        try:
            await self._watch(worker, running)
        finally:
            if not running.done():
                # Only when this task itself is cancelled: the worker goes with it.
                running.cancel()
                await asyncio.gather(running, return_exceptions=True)
            readying.cancel()
            self._renewing = False
            await _finish(renewing, self._ttl)
            await asyncio.gather(readying, return_exceptions=True)
            self._worker = None
        error = running.exception() if not running.cancelled() else None
        if self._lost is None and time.monotonic() >= self._valid_until:
            # The worker ended (a frozen process thawed, say: its first write refused
            # as stale) before the watch saw the lease's time run out. It had.
            self._lose("expired")
        if self._lost is not None:
            # Whatever the worker did after the lease was gone is not this instance's
            # failure: it follows again.
            if error is not None:
                _logger.info("singleton %s: worker ended after the lease: %r", self._name, error)
            self._become(FOLLOWER, self._lost)
            return
        await self._release()
        if error is not None:
            self._last_error = error
            self._become(FOLLOWER, "worker failed")
            raise error
        if not self._stopping.is_set():
            # The worker finished its work on its own: nothing is left to lead.
            self._stopping.set()
            self._become(FOLLOWER, "worker ended")
            return
        self._become(FOLLOWER, "released")

    async def _watch(self, worker: Worker[S], running: asyncio.Task[None]) -> None:
        """Until ``running`` ends: stop the worker on ``stop()`` or a lost lease; cancel
        it if the lease is lost and it has not returned within the grace."""
        stopping = asyncio.create_task(self._stopping.wait())
        losing = asyncio.create_task(self._lost_event.wait())
        cancel_at: float | None = None
        try:
            while not running.done():
                now = time.monotonic()
                if self._lost is None and now >= self._valid_until:
                    self._lose("expired")
                if self._lost is not None and cancel_at is None:
                    _logger.warning(
                        "singleton %s: lease %s; stopping the worker", self._name, self._lost
                    )
                    worker.stop()
                    cancel_at = now + self._ttl * STOP_GRACE_FRACTION
                if cancel_at is not None and now >= cancel_at:
                    _logger.warning("singleton %s: worker did not stop; cancelled", self._name)
                    running.cancel()
                    await asyncio.gather(running, return_exceptions=True)
                    return
                deadline = cancel_at if cancel_at is not None else self._valid_until
                watched: set[asyncio.Task[Any]] = {running}
                if not stopping.done():
                    watched.add(stopping)
                if not losing.done():
                    watched.add(losing)
                await asyncio.wait(
                    watched,
                    timeout=max(deadline - time.monotonic(), 0.0),
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if stopping.done():
                    worker.stop()
        finally:
            stopping.cancel()
            losing.cancel()
            await asyncio.gather(stopping, losing, return_exceptions=True)

    async def _ready_with(self, worker: Worker[S]) -> None:
        with contextlib.suppress(Exception):
            await worker.ready()
            self._readiness.set()

    async def _renew_forever(self) -> None:
        # ``_renewing`` as well as the cancel: some drivers (nats-py) swallow a
        # CancelledError that lands inside their calls (see ``KeepAlive``).
        while self._renewing and self._lost is None:
            await asyncio.sleep(self._ttl * RENEWAL_FRACTION)
            if not self._renewing:
                return
            requested = time.monotonic()
            try:
                held = await self._leases.acquire(self._scope, 0, self._member, self._ttl)
            except (BusError, StoreError) as error:
                # Closed or out: the lease is not renewed, and runs out on its own
                # schedule (``_watch`` sees that); one going back stays counted on.
                self._last_error = error
                _logger.warning("singleton %s: renewing the lease failed: %s", self._name, error)
                if isinstance(error, BusClosed | StoreClosed):
                    return
                continue
            if not held:
                self._holder = await self._current_holder()
                self._lose("taken")
                return
            self._valid_until = max(
                self._valid_until, requested + self._ttl * (1 - SAFETY_FRACTION)
            )
            self._last_error = None

    def _lose(self, reason: str) -> None:
        if self._lost is None:
            self._lost = reason
            self._lost_event.set()

    async def _release(self) -> None:
        try:
            await self._leases.release(self._scope, 0, self._member)
        except (BusError, StoreError) as error:
            # It runs out by itself; a follower takes over after the ttl instead.
            _logger.warning("singleton %s: releasing the lease failed: %s", self._name, error)

    def _become(self, role: str, reason: str | None) -> None:
        if role == self._role:
            return
        was_leader = self._role == LEADER
        self._role = role
        self._since = time.time()
        if role == LEADER:
            self._holder = self._member
        elif self._holder == self._member:
            self._holder = None
        if reason is None:
            reason = "stopped"
        if role == LEADER or was_leader:
            _logger.info(
                "singleton %s: %s %s leader (%s)",
                self._name,
                self._member,
                "became" if role == LEADER else "is no longer",
                reason,
            )
            if self._hooks is not None:
                self._hooks.leadership_changed(
                    LeadershipChanged(
                        name=self._name,
                        member=self._member,
                        leader=role == LEADER,
                        reason=reason,
                    )
                )


async def _finish(task: asyncio.Task[None], ttl: float) -> None:
    # A renewal stuck in a call that swallowed the cancel is not waited on for ever.
    task.cancel()
    await asyncio.wait({task}, timeout=ttl)
    if task.done() and not task.cancelled():
        task.exception()
