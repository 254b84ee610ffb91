"""What the Prometheus metrics cost: workloads b (64 concurrent commands) and j (the
relay publishing a populated log) run plain and with the metrics hooks installed, in
turn, and the medians compared.

    python bench/metrics_overhead.py                       # b and j, SQLite
    python bench/metrics_overhead.py --backend nats --only j --json

Setups, installed as the process default (``install_hooks``) before the workload builds
its store, executor and relay:

* ``plain`` — no hooks;
* ``no-op`` — a hook that does nothing: what the seam itself costs once anything
  listens (the records built, the hooked path taken), whatever the hook;
* ``metrics`` — ``PrometheusHooks`` on a registry of its own per run (what a service
  that turns metrics on pays on its hot path; a scrape is not part of it).

The setups rotate within each repetition so none always runs first; at least three
repetitions; each setup prints one JSON line (``"kind": "overhead"``, as the tracing
overhead bench does): its median, the plain median, how much slower it is, and the
process CPU time per operation (steadier than throughput on a shared machine).
``fresh_metrics_hooks`` is what the tracing overhead bench adds to its SDK setup
(``SDK_EXTRAS["metrics"]``) to measure tracing and metrics together.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

if __package__ in {None, ""}:  # run as a script: make ``bench`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from prometheus_client import CollectorRegistry

from bench import eventcore_side, messaging_side
from bench.common import BACKENDS, Backend, Context, Sizes
from eventcore.instrumentation import Hooks, install_hooks
from eventcore.observability import PrometheusHooks

__all__ = ["fresh_metrics_hooks", "main"]

#: How much slower than plain the metrics may make a workload (issue 12: SDK + metrics
#: at most 15%; metrics alone are a part of that).
MAX_SLOWER = 15.0


def fresh_metrics_hooks() -> Hooks:
    """Metrics hooks on a registry of their own, so each run starts from nothing."""
    return PrometheusHooks(CollectorRegistry())


def _b(ctx: Context) -> float:
    return float(eventcore_side.run("b_new_streams_concurrent", ctx))


def _j(ctx: Context) -> float:
    return float(asyncio.run(messaging_side.j_relay_throughput(ctx)))


#: Workload letter → (name, unit, measure, how many operations it does).
WORKLOADS: dict[str, tuple[str, str, Callable[[Context], float], Callable[[Sizes], int]]] = {
    "b": ("b_new_streams_concurrent", "commands/s", _b, lambda sizes: sizes.concurrent_streams),
    "j": ("j_relay_throughput", "events/s", _j, lambda sizes: sizes.relay_events),
}

SETUPS: dict[str, Callable[[], None]] = {
    "plain": lambda: install_hooks(),
    # The seam's own share: hooks that do nothing, so the library takes its hooked path.
    "no-op": lambda: install_hooks(Hooks()),
    "metrics": lambda: install_hooks(fresh_metrics_hooks()),
}


@dataclass
class OverheadRow:
    workload: str
    backend: str
    setup: str
    unit: str
    median: float
    plain: float
    #: Percent below plain's throughput (negative: faster, i.e. noise).
    slower_pct: float
    target: str | None
    target_met: bool | None
    repeat: int
    samples: list[float]
    #: Median process CPU time per operation (every thread, setup included): steadier
    #: than throughput on a machine others load too.
    cpu_us_per_op: float
    cpu_slower_pct: float


def measure(
    letter: str, backend: Backend, sizes: Sizes, repeat: int, root: Path
) -> list[OverheadRow]:
    name, unit, run, operations = WORKLOADS[letter]
    repeat = max(repeat, 3)
    names = list(SETUPS)
    samples: dict[str, list[float]] = {setup: [] for setup in names}
    cpu: dict[str, list[float]] = {setup: [] for setup in names}
    for rep in range(repeat):
        for setup in names[rep % len(names) :] + names[: rep % len(names)]:
            workdir = root / f"{letter}-{rep}-{setup}"
            workdir.mkdir()
            ctx = Context(backend=backend, sizes=sizes, workdir=workdir, cache_dir=root)
            backend.prepare(workdir)
            SETUPS[setup]()
            started = time.perf_counter()
            cpu_started = time.process_time()
            try:
                value = run(ctx)
                cpu[setup].append((time.process_time() - cpu_started) / operations(sizes) * 1e6)
            finally:
                install_hooks()
                backend.cleanup(workdir)
                shutil.rmtree(workdir, ignore_errors=True)
            samples[setup].append(value)
            print(
                f"  [{name}] rep {rep + 1}/{repeat} {setup:<8} {value:>12,.0f} {unit}"
                f"  ({time.perf_counter() - started:.1f}s)",
                file=sys.stderr,
                flush=True,
            )
    plain = statistics.median(samples["plain"])
    plain_cpu = statistics.median(cpu["plain"])
    rows = []
    for setup in names:
        median = statistics.median(samples[setup])
        slower = (plain - median) / plain * 100 if plain else 0.0
        cpu_per_op = statistics.median(cpu[setup])
        limited = setup != "plain"
        rows.append(
            OverheadRow(
                workload=name,
                backend=backend.name,
                setup=setup,
                unit=unit,
                median=median,
                plain=plain,
                slower_pct=round(slower, 2),
                target=f"≤ {MAX_SLOWER:g}% slower than plain" if limited else None,
                target_met=slower <= MAX_SLOWER if limited else None,
                repeat=repeat,
                samples=samples[setup],
                cpu_us_per_op=round(cpu_per_op, 2),
                cpu_slower_pct=round((cpu_per_op - plain_cpu) / plain_cpu * 100, 2),
            )
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="the cost of eventcore's Prometheus metrics")
    parser.add_argument("--backend", choices=sorted(BACKENDS), default="sqlite")
    parser.add_argument("--only", default="b,j", help="workload letters: b, j or b,j")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions (at least 3)")
    parser.add_argument("--quick", action="store_true", help="the quick sizes")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every size")
    parser.add_argument("--json", action="store_true", help="one JSON line per setup")
    args = parser.parse_args(argv)
    letters = [letter.strip() for letter in args.only.split(",") if letter.strip()]
    unknown = [letter for letter in letters if letter not in WORKLOADS]
    if unknown:
        parser.error(f"unknown workloads {unknown}: choose from {sorted(WORKLOADS)}")
    backend = BACKENDS[args.backend]()
    reason = backend.unavailable()
    if reason is not None:
        print(f"--backend {backend.name}: {reason}", file=sys.stderr)
        return 2
    sizes = Sizes.quick() if args.quick else Sizes.default()
    if args.scale != 1.0:
        sizes = sizes.scaled(args.scale)
    root = Path(tempfile.mkdtemp(prefix="eventcore-metrics-bench-"))
    try:
        for letter in letters:
            for row in measure(letter, backend, sizes, args.repeat, root):
                if args.json:
                    print(json.dumps({"kind": "overhead", **asdict(row)}), flush=True)
                else:
                    verdict = "" if row.target_met is None else (" ✓" if row.target_met else " ✗")
                    print(
                        f"{row.workload} on {row.backend}, {row.setup}: {row.median:,.0f} "
                        f"{row.unit} ({row.slower_pct:+.1f}% slower than plain){verdict}; "
                        f"{row.cpu_us_per_op:,.1f} µs CPU per operation "
                        f"({row.cpu_slower_pct:+.1f}%)"
                    )
    finally:
        backend.finish()
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
