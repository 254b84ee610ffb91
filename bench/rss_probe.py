"""Run in a fresh process: replay a long log and report how much the resident set grew.

``python -m bench.rss_probe --library eventcore|eventsourcing --backend NAME --target T
--events N --per-stream K`` prints one JSON object: ``growth_mb`` (peak RSS during the
replay minus RSS just before it), ``baseline_mb``, ``peak_mb``, ``events``, ``seconds``.

``--target`` is the populated store (an eventcore URL, or an eventsourcing SQLite file or,
on PostgreSQL, schema);
for the memory backend the process populates its own store first, before the baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Probe", "main"]

MB = 1024 * 1024


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


class Probe:
    """Baseline RSS, then the peak seen while the replay runs."""

    def __init__(self) -> None:
        gc.collect()
        # Reset the kernel's high-water mark to the current RSS, so VmHWM is the replay's peak.
        try:
            Path("/proc/self/clear_refs").write_text("5")
            self.hwm_reset = True
        except OSError:
            self.hwm_reset = False
        self.baseline = _status_kb("VmRSS") * 1024
        self.peak = self.baseline
        self.started = time.perf_counter()
        self.seconds = 0.0

    def sample(self) -> None:
        self.peak = max(self.peak, _status_kb("VmRSS") * 1024)

    def finish(self, events: int) -> dict[str, float | int | bool]:
        self.seconds = time.perf_counter() - self.started
        self.sample()
        if self.hwm_reset:
            self.peak = max(self.peak, _status_kb("VmHWM") * 1024)
        return {
            "growth_mb": (self.peak - self.baseline) / MB,
            "baseline_mb": self.baseline / MB,
            "peak_mb": self.peak / MB,
            "events": events,
            "seconds": self.seconds,
            "hwm_reset": self.hwm_reset,
        }


@dataclass(frozen=True)
class Args:
    library: str
    backend: str
    target: str
    events: int
    per_stream: int


async def _eventcore(args: Args) -> dict[str, float | int | bool]:
    from bench.eventcore_side import opened, populate_log, registry

    async with opened(args.target) as store:
        if args.backend == "memory":
            await populate_log(store, args.events, args.per_stream)
        decode = registry.decode
        seen = 0
        probe = Probe()
        async for batch in store.read_all(batch_size=1_000):
            for stored in batch:
                decode(stored)
            seen += len(batch)
            probe.sample()
        return probe.finish(seen)


def _eventsourcing(args: Args) -> dict[str, float | int | bool]:
    from bench.eventsourcing_side import opened, populate_replay, replay

    if args.backend == "memory":
        env = {"PERSISTENCE_MODULE": "eventsourcing.popo"}
    elif args.backend == "postgres":
        from bench.common import PostgresBackend

        env = {**PostgresBackend().eventsourcing_env_for(args.target), "CREATE_TABLE": "n"}
    else:
        env = {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": args.target}
    with opened(env) as app:
        if args.backend == "memory":
            populate_replay(app, args.events, args.per_stream, None)
        probe = Probe()
        on_page: Callable[[], None] = probe.sample
        seen = replay(app, on_page=on_page)
        return probe.finish(seen)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--library", choices=["eventcore", "eventsourcing"], required=True)
    parser.add_argument("--backend", required=True)
    parser.add_argument("--target", required=True)
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument("--per-stream", type=int, default=1_000)
    parsed = parser.parse_args()
    args = Args(
        library=parsed.library,
        backend=parsed.backend,
        target=parsed.target,
        events=parsed.events,
        per_stream=parsed.per_stream,
    )
    report = asyncio.run(_eventcore(args)) if args.library == "eventcore" else _eventsourcing(args)
    if report["events"] != args.events:
        raise SystemExit(f"replayed {report['events']} events, expected {args.events}")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
