"""Rebuilding a projection without downtime.

``rebuild`` sets up a new version beside the live one (its own tables, its own
checkpoints, from position 0), runs it until it has caught up with the log as it is when
the catch-up phase ends, stops it, and switches: in one transaction the new version
becomes live, the plain-named views point at its tables, and the old version is retired
(dropped unless ``keep_old``). Readers see the old state until that commit and the new
one after it.

A runner still on the old version finds out at its next batch (``VersionRetired``,
nothing written) and continues on the new version from the checkpoints the rebuild
left: events that arrive during and after the rebuild are applied once, in order.

A rebuild is also the way on when a source's store was replaced and the runner refuses
the old version (``CheckpointMismatch``): the new version's checkpoints start empty, so
it is built from the sources' stores as they are now, bound to them, and replaces the
view of the old log.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from eventcore.projection.projection import Projection
from eventcore.projection.runner import ProjectionRunner, ProjectionStatus, Source
from eventcore.projection.target import Target
from eventcore.store.follower import DEFAULT_POLL_INTERVAL

__all__ = ["rebuild"]


async def rebuild(
    projection: Projection,
    target: Target,
    sources: Source | Sequence[Source],
    *,
    keep_old: bool = False,
    batch_size: int = 1000,
    poll_interval: float = DEFAULT_POLL_INTERVAL,
    on_progress: Callable[[ProjectionStatus], None] | None = None,
    progress_every: float = 0.25,
) -> int:
    """Build a new version of ``projection``, make it live; return its number.

    ``on_progress`` is called every ``progress_every`` seconds while it catches up (and
    once at the end), e.g. to draw a progress bar.
    """
    version = await target.new_version(projection)
    runner = ProjectionRunner(
        projection,
        target,
        sources,
        version=version,
        batch_size=batch_size,
        poll_interval=poll_interval,
    )
    async with asyncio.TaskGroup() as group:
        reporter = (
            group.create_task(_report(runner, on_progress, progress_every))
            if on_progress is not None
            else None
        )
        await runner.catch_up()
        if reporter is not None:
            reporter.cancel()
    if on_progress is not None:
        on_progress(runner.status())
    await target.switch(projection, version, keep_old=keep_old)
    return version


async def _report(
    runner: ProjectionRunner, on_progress: Callable[[ProjectionStatus], None], every: float
) -> None:
    while True:
        on_progress(runner.status())
        # A reporting interval, not a synchronisation: nothing waits for this sleep.
        await asyncio.sleep(every)
