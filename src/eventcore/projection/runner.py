"""``ProjectionRunner``: keep one projection up to date from one or more sources.

One ``LogFollower`` per source, each in its own task of one ``TaskGroup``; each batch
goes to the target with that source's checkpoint. A view over several services has one
source per service (one follower, one checkpoint each); events of one source are
applied in log order, while batches of different sources interleave as they come.

The runner works on the live version unless given one (a rebuild gives the version it
builds). When the target says its version was retired — a rebuild switched — it loads
the new live version and its checkpoints and carries on there, so a switch never
loses or repeats an event.

Each checkpoint keeps the id of the store whose log it counts. Before following a
source, the runner checks that its checkpoint counts the log of that source's store
(``Checkpoint.counts``: the same store id, and not past its head). If not — the
source's store was replaced by a fresh one, a new schema, a wiped file — the view holds
another log's events, and the runner refuses with ``CheckpointMismatch`` rather than
skip the new store's first events or apply them over the old state: rebuild the
projection from the new store. A checkpoint saved before checkpoints kept their store is
taken as this store's up to its head (and bound to it at once); above the head it is
proof of another log.

Each batch names the checkpoint it continues (``Batch.after``), and the target refuses
it if another runner moved that checkpoint meanwhile (``CheckpointMoved``, nothing
written): the runner logs a warning, reloads its checkpoints and goes on from there. So
two runners that overlap (an old leader that froze mid-commit and thawed, while the new
one started from the checkpoint before that commit) never apply an event twice or skip
one; they only waste work. Run one runner per projection, or one per service through
``eventcore.singleton.Singleton``; this is the fence for when two overlap anyway.

The runner is a ``Worker`` (``eventcore.lifecycle``): it is ready once it has loaded
its version and every source's checkpoint and follows them. A closed store or target
(``StoreClosed``) ends ``run`` with that error rather than being waited out.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import msgspec

from eventcore.events import EventRegistry
from eventcore.instrumentation import BatchApplied, BatchStarted, FanOut, Hooks, resolve
from eventcore.lifecycle import Readiness
from eventcore.projection.errors import (
    CheckpointMismatch,
    CheckpointMoved,
    InvalidProjection,
    VersionRetired,
)
from eventcore.projection.projection import Projection
from eventcore.projection.target import Batch, Target
from eventcore.store.checkpoint import Checkpoint
from eventcore.store.follower import DEFAULT_POLL_INTERVAL, LogFollower
from eventcore.store.protocol import EventStore

__all__ = ["ProjectionRunner", "ProjectionStatus", "Source", "SourceStatus"]

_logger = logging.getLogger(__name__)

#: Weight of the newest batch in the events/s figure (an exponential moving average).
_RATE_WEIGHT = 0.2


@dataclass(frozen=True)
class Source:
    """A service's store, read by a projection: its name keys the checkpoint."""

    name: str
    store: EventStore
    registry: EventRegistry


class SourceStatus(msgspec.Struct, frozen=True, kw_only=True):
    source: str
    position: int
    head: int
    lag_events: int
    lag_seconds: float
    events_per_second: float


class ProjectionStatus(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    version: int | None
    sources: tuple[SourceStatus, ...]

    @property
    def lag_events(self) -> int:
        return sum(source.lag_events for source in self.sources)


class _Rate:
    def __init__(self) -> None:
        self.value = 0.0
        self._since = time.monotonic()

    def update(self, events: int) -> float:
        now = time.monotonic()
        elapsed, self._since = max(now - self._since, 1e-6), now
        current = events / elapsed
        self.value = (
            current
            if self.value == 0.0
            else (_RATE_WEIGHT * current + (1 - _RATE_WEIGHT) * self.value)
        )
        return self.value


class ProjectionRunner:
    """``await runner.run()`` until ``runner.stop()``; or ``await runner.catch_up()``."""

    def __init__(
        self,
        projection: Projection,
        target: Target,
        sources: Source | Sequence[Source],
        *,
        version: int | None = None,
        batch_size: int = 1000,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        hooks: Hooks | None = None,
    ) -> None:
        self._sources = (sources,) if isinstance(sources, Source) else tuple(sources)
        names = [source.name for source in self._sources]
        if not names or len(set(names)) != len(names):
            raise InvalidProjection("a runner needs one or more sources with distinct names")
        self._projection = projection
        self._target = target
        self._fixed_version = version
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._version: int | None = None
        self._followers: dict[str, LogFollower] = {}
        self._store_ids: dict[str, str] = {}
        self._rates = {name: _Rate() for name in names}
        self._following = asyncio.Event()
        self._stopping = False
        self._readiness = Readiness(f"projection runner of {projection.name!r}")
        self._hooks = resolve(hooks)

    @property
    def version(self) -> int | None:
        """The version being written (None until ``run`` has loaded it)."""
        return self._version

    def stop(self) -> None:
        """Let ``run`` return once each source's batch in hand is committed."""
        self._stopping = True
        self._readiness.stopped()
        for follower in self._followers.values():
            follower.stop()

    async def ready(self) -> None:
        """Return once ``run`` has loaded the version and checkpoints and follows the
        sources; raise what failed ``run`` before that, or ``WorkerStopped``."""
        await self._readiness.wait()

    async def run(self) -> None:
        """Apply events until ``stop()``; raises what ended it (``CheckpointMismatch``,
        a store's or target's error)."""
        try:
            await self._run_versions()
        except BaseException as error:
            self._readiness.fail(error)
            raise

    async def _run_versions(self) -> None:
        while not self._stopping:
            again = False
            try:
                await self._run_version()
            except* VersionRetired:
                if self._fixed_version is not None:
                    raise  # the version being built was reset or replaced: nothing to follow
                again = True
            except* CheckpointMoved as moved:
                # Another runner committed first (a leader that froze mid-commit and
                # thawed, say); nothing of ours was written. Go on from where it got to.
                for error in moved.exceptions:
                    _logger.warning("%s; reloading the checkpoints", error)
                again = True
            if not again:
                return

    async def _run_version(self) -> None:
        projection, target = self._projection, self._target
        version = self._fixed_version
        if version is None:
            version = await target.live_version(projection)
        saved = await target.checkpoints(projection.name, version)
        start = {
            source.name: await self._starting_position(version, source, saved.get(source.name))
            for source in self._sources
        }
        self._version = version
        self._followers = {
            source.name: LogFollower(
                source.store,
                after=start[source.name],
                types=projection.handled_types(source.name),
                batch_size=self._batch_size,
                poll_interval=self._poll_interval,
            )
            for source in self._sources
        }
        if self._stopping:
            return
        _logger.info(
            "projection %s: version %d starts at %s",
            projection.name,
            version,
            ", ".join(f"{name} position {position}" for name, position in start.items()),
        )
        self._readiness.set()
        self._following.set()
        try:
            async with asyncio.TaskGroup() as group:
                for source in self._sources:
                    group.create_task(
                        self._follow(
                            source, version, self._followers[source.name], start[source.name]
                        )
                    )
        except BaseExceptionGroup as failures:
            # Almost always one source's failure (its store closed, a handler's bug):
            # raised as itself, so callers catch StoreClosed rather than unpack a group.
            if len(failures.exceptions) == 1:
                raise failures.exceptions[0] from None
            raise
        finally:
            # These followers are done: wake whoever waits on them (``caught_up``).
            self._following.clear()
            for follower in self._followers.values():
                follower.stop()

    async def _starting_position(
        self, version: int, source: Source, saved: Checkpoint | None
    ) -> int:
        """Where ``source`` continues on ``version``: its checkpoint, if that counts the
        log of the source's store; else ``CheckpointMismatch`` (see the module doc)."""
        name = self._projection.name
        store_id = await source.store.store_id()
        self._store_ids[source.name] = store_id
        if saved is None:
            return 0
        head = await source.store.last_position()
        if not saved.counts(store_id, head):
            raise CheckpointMismatch(name, version, source.name, saved, store_id, head)
        if saved.store_id is None:
            # Bound now, not with the next batch: a store replaced before any new event
            # arrives must be seen for what it is.
            await self._target.bind_checkpoint(name, version, source.name, store_id)
        return saved.position

    async def _follow(
        self, source: Source, version: int, follower: LogFollower, after: int
    ) -> None:
        handlers = self._projection.handlers_for(source.name)
        rate = self._rates[source.name]
        store_id = self._store_ids[source.name]
        name = self._projection.name
        behind = True
        async for events in follower.batches():
            batch = Batch(
                source.name,
                events,
                handlers,
                source.registry,
                rate.update(len(events)),
                store_id,
                after,
            )
            if self._hooks is None:
                await self._target.commit(self._projection, version, batch)
            else:
                await self._observed_commit(self._hooks, source.name, version, batch, follower)
            after = batch.position
            # Logged once per run of the version: under a steady flow a follower is
            # caught up and behind by turns, and a line each time would be noise.
            if behind and follower.head <= max(follower.scanned, events[-1].position):
                behind = False
                _logger.info(
                    "projection %s: source %s caught up at position %d (version %d)",
                    name,
                    source.name,
                    events[-1].position,
                    version,
                )

    async def _observed_commit(
        self, hooks: FanOut, source: str, version: int, batch: Batch, follower: LogFollower
    ) -> None:
        events = batch.events
        scope = hooks.batch_started(
            BatchStarted(
                projection=self._projection.name, source=source, version=version, events=events
            )
        )
        started = time.perf_counter()
        last = events[-1].position
        error: BaseException | None = None
        try:
            await self._target.commit(self._projection, version, batch)
        except BaseException as failure:
            error = failure
            raise
        finally:
            hooks.batch_applied(
                BatchApplied(
                    projection=self._projection.name,
                    source=source,
                    version=version,
                    events=len(events),
                    position=last,
                    lag_events=max(follower.head - max(follower.scanned, last), 0),
                    error=error,
                    seconds=time.perf_counter() - started,
                ),
                scope,
            )

    async def caught_up(self) -> None:
        """Return once every source has processed its log up to the head it has now
        (on whichever version the runner is on by then), or the runner has stopped."""
        heads = [await source.store.last_position() for source in self._sources]
        while not self._stopping:
            await self._following.wait()
            followers = self._followers
            reached = [
                await followers[source.name].reached(head)
                for source, head in zip(self._sources, heads, strict=True)
            ]
            if all(reached):
                return
            # A follower stopped short: the runner moved to another version. Wait on the
            # new followers, which start from that version's checkpoints.

    async def catch_up(self) -> None:
        """Run until caught up with the log as it is now, then stop."""
        async with asyncio.TaskGroup() as group:
            running = group.create_task(self.run())
            waiting = group.create_task(self.caught_up())
            # Whichever ends first: run() only ends early by failing, which cancels us.
            await asyncio.wait({running, waiting}, return_when=asyncio.FIRST_COMPLETED)
            self.stop()

    def status(self) -> ProjectionStatus:
        sources = []
        for source in self._sources:
            follower = self._followers.get(source.name)
            if follower is None:
                sources.append(
                    SourceStatus(
                        source=source.name,
                        position=0,
                        head=0,
                        lag_events=0,
                        lag_seconds=0.0,
                        events_per_second=0.0,
                    )
                )
                continue
            lag = follower.lag()
            sources.append(
                SourceStatus(
                    source=source.name,
                    position=follower.position,
                    head=follower.head,
                    lag_events=lag.events,
                    lag_seconds=lag.seconds,
                    events_per_second=self._rates[source.name].value,
                )
            )
        return ProjectionStatus(
            name=self._projection.name, version=self._version, sources=tuple(sources)
        )
