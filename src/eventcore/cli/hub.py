"""``eventcore federate run CONFIG`` (also ``eventcore federate --config CONFIG``): the
federation hub as a process of its own.

It loads the configuration (refused whole on any problem: nothing starts), opens every
bus the configuration names (once per distinct URL), runs a ``Hub`` until SIGTERM or
SIGINT, then stops it cleanly — the batch in hand is finished or sent back, every
group is left, every bus closed — and exits 0.

What it prints on stdout, one line each, for a person or a supervising script:
``federate: ready: …`` once every source is read, a status line every
``--status-every`` seconds while anything changed, and ``federate: stopped: …`` at the
end. Bus URLs are never printed (they may hold passwords): aliases name the buses.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal

from eventcore._checks import check_seconds, check_whole
from eventcore.federation import Hub, HubConfig, HubStatus
from eventcore.messaging import Bus, open_bus

__all__ = ["describe_status", "serve"]


def describe_status(status: HubStatus) -> str:
    lags = ", ".join(
        f"{source.origin} {source.lag_seconds:.1f} s"
        for source in status.sources
        if source.lag_seconds is not None
    )
    line = (
        f"{status.received} received, {status.routed} routed, {status.unmatched} unmatched, "
        f"{status.dead_lettered} dead-lettered"
    )
    if status.retried:
        line += f", {status.retried} retried"
    if lags:
        line += f"; lag {lags}"
    if status.last_error:
        line += f"; last error: {status.last_error}"
    return line


def _say(line: str) -> None:
    print(f"federate: {line}", flush=True)


async def serve(
    config: HubConfig,
    *,
    group: str,
    member: str | None,
    batch_size: int,
    ack_wait: float,
    status_every: float,
) -> None:
    """Run the hub of ``config`` until SIGTERM or SIGINT (see the module docs)."""
    # Checked before any bus is opened: opening a SQLite bus creates its file, and a bad
    # number must change nothing. typer's range checks let nan and inf through.
    check_whole("batch_size", batch_size)
    check_seconds("ack_wait", ack_wait)
    check_seconds("status_every", status_every)
    opened: dict[str, Bus] = {}
    try:
        buses: dict[str, Bus] = {}
        for alias, url in config.buses.items():
            if url not in opened:
                opened[url] = await open_bus(url)
            buses[alias] = opened[url]
        hub = Hub(
            config,
            buses,
            group=group,
            member=member,
            batch_size=batch_size,
            ack_wait=ack_wait,
        )
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, hub.stop)
        try:
            await _run(hub, config, status_every)
        finally:
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)
    finally:
        for bus in opened.values():
            with contextlib.suppress(Exception):
                await bus.aclose()


async def _run(hub: Hub, config: HubConfig, status_every: float) -> None:
    running = asyncio.create_task(hub.run())
    readying = asyncio.ensure_future(hub.ready())
    await asyncio.wait({running, readying}, return_when=asyncio.FIRST_COMPLETED)
    if readying.done() and readying.exception() is None:
        sources = ", ".join(source.origin for source in hub.status().sources)
        plural = "" if len(config.rules) == 1 else "s"
        _say(
            f"ready: hub {hub.group!r}, {len(config.rules)} rule{plural} from {config.file}, "
            f"reading {sources}"
        )
    else:
        readying.cancel()
        await asyncio.gather(readying, return_exceptions=True)
    shown = None
    while not running.done():
        await asyncio.wait({running}, timeout=status_every)
        line = describe_status(hub.status())
        if line != shown and not running.done():
            _say(line)
            shown = line
    await running  # raises what ended the hub, if not a stop
    _say(f"stopped: {describe_status(hub.status())}")
