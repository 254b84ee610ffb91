"""Benchmark eventcore side by side with the ``eventsourcing`` library and the raw driver.

    python bench/run.py [--backend sqlite|memory|postgres|nats] [--quick] [--json]
                        [--repeat N] [--only a,b,...] [--scale F] [--overhead]

``--backend nats`` runs the messaging workloads (j, k, l) with the bus on the NATS server
at 127.0.0.1:4222; the other backends run every workload that has a side for them.

Every workload runs on every side in each repetition, on fresh databases, timing only the
workload. Medians are reported: with ``--json`` one JSON object per workload on stdout,
otherwise a table. Progress goes to stderr.

``--overhead`` also runs b and j (of those selected) plain and with the tracing hooks
(``bench/overhead.py``), one more JSON line per setup, ``"kind": "overhead"``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if __package__ in {None, ""}:  # run as a script: make ``bench`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import BACKENDS, Backend, Context, Sizes
from bench.saga_side import PeerUnavailable
from bench.workloads import Measure, Workload, select

if TYPE_CHECKING:
    from bench.overhead import OverheadRow

SIDES = ("eventcore", "eventsourcing", "raw")


@dataclass
class Row:
    """One workload's result: the medians, the ratio, and how they were obtained."""

    workload: str
    backend: str
    unit: str
    eventcore: float | None
    eventsourcing: float | None
    raw: float | None
    ratio_vs_eventsourcing: float | None
    #: eventcore / raw for throughput, raw / eventcore for ms and MB (1.0 = as fast as raw).
    ratio_vs_raw: float | None
    target: str | None
    target_met: bool | None
    repeat: int
    samples: dict[str, list[float]]
    notes: str
    facts: dict[str, list[str]] = field(default_factory=dict)
    #: Another library's figure on the same workload (``peer_name``), its median.
    peer_name: str | None = None
    peer: float | None = None


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if unit == "MB":
        return f"{value:,.1f}"
    return f"{value:,.0f}"


def measure_workload(
    workload: Workload, backend: Backend, sizes: Sizes, repeat: int, root: Path
) -> Row:
    measures: dict[str, Measure | None] = {
        "eventcore": workload.eventcore,
        "eventsourcing": workload.eventsourcing,
        "raw": workload.raw if backend.has_raw else None,
        "peer": workload.peer,
    }
    sides = [side for side in (*SIDES, "peer") if measures[side] is not None]
    peer_missing: str | None = None
    if workload.max_repeat is not None:
        repeat = min(repeat, workload.max_repeat)
    samples: dict[str, list[float]] = {side: [] for side in sides}
    facts: dict[str, list[str]] = {}
    cache_dir = root / "cache"
    cache_dir.mkdir(exist_ok=True)
    for rep in range(repeat):
        # Rotate the order each repetition so no side always runs first (or warmest).
        order = sides[rep % len(sides) :] + sides[: rep % len(sides)]
        for side in order:
            measure = measures[side]
            assert measure is not None
            workdir = root / f"{workload.letter}-{rep}-{side}"
            workdir.mkdir()
            ctx = Context(backend=backend, sizes=sizes, workdir=workdir, cache_dir=cache_dir)
            started = time.perf_counter()
            backend.prepare(workdir)
            try:
                value = measure(ctx)
            except PeerUnavailable as reason:
                peer_missing = str(reason)
                continue
            finally:
                backend.cleanup(workdir)
                shutil.rmtree(workdir, ignore_errors=True)
            elapsed = time.perf_counter() - started
            samples[side].append(value)
            for key, fact in ctx.facts.items():
                facts.setdefault(f"{side}.{key}", []).append(fact)
            progress(
                f"  [{workload.name}] rep {rep + 1}/{repeat} {side:<13} "
                f"{_fmt(value, workload.unit):>12} {workload.unit}  ({elapsed:.1f}s incl. setup)"
            )
    samples = {side: values for side, values in samples.items() if values}
    medians = {side: statistics.median(values) for side, values in samples.items()}
    eventcore = medians.get("eventcore")
    eventsourcing = medians.get("eventsourcing")
    raw = medians.get("raw")
    ratio = workload.ratio(eventcore, eventsourcing)
    ratio_vs_raw = None if raw is None else workload.ratio(eventcore, raw)
    target = workload.target_for(backend)
    notes = workload.describe(sizes, backend)
    if facts:
        notes += "; " + "; ".join(f"{key}: {', '.join(values)}" for key, values in facts.items())
    if workload.raw is not None and not backend.has_raw:
        notes += f"; raw: no driver-level equivalent on {backend.name}"
    if workload.peer_name is not None:
        if peer_missing is not None:
            notes += f"; {workload.peer_name} (peer) not measured: {peer_missing}"
        else:
            notes += f"; peer = {workload.peer_name}: {saga_peer_note()}"
    return Row(
        workload=workload.name,
        backend=backend.name,
        unit=workload.unit,
        eventcore=eventcore,
        eventsourcing=eventsourcing,
        raw=raw,
        ratio_vs_eventsourcing=ratio,
        ratio_vs_raw=ratio_vs_raw,
        target=target.text if target else None,
        target_met=target.met(eventcore, ratio, raw) if target else None,
        repeat=repeat,
        samples=samples,
        notes=notes,
        facts=facts,
        peer_name=workload.peer_name,
        peer=medians.get("peer"),
    )


def saga_peer_note() -> str:
    from bench import saga_peer

    return " ".join((saga_peer.__doc__ or "").split("\n\n")[-1].split())


def print_table(rows: list[Row], header: str) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 150)
    table = Table(title=header, show_lines=True)
    columns = ("workload", "unit", "eventcore", "eventsourcing", "raw", "peer", "ratio", "target")
    for column in columns:
        justify = "left" if column in {"workload", "unit", "target"} else "right"
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for row in rows:
        ratio = "—" if row.ratio_vs_eventsourcing is None else f"{row.ratio_vs_eventsourcing:.2f}×"
        if row.target is None:
            target = ""
        else:
            mark = {True: "[green]✓[/]", False: "[red]✗[/]", None: "?"}[row.target_met]
            target = f"{mark} {row.target}"
        table.add_row(
            row.workload,
            row.unit,
            _fmt(row.eventcore, row.unit),
            _fmt(row.eventsourcing, row.unit),
            _fmt(row.raw, row.unit),
            "—" if row.peer_name is None else f"{_fmt(row.peer, row.unit)} ({row.peer_name})",
            ratio,
            target,
        )
    console.print(table)
    for row in rows:
        console.print(f"[bold]{row.workload}[/]: {row.notes}", highlight=False)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="eventcore vs eventsourcing vs the raw driver",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--backend", choices=sorted(BACKENDS), default="sqlite")
    parser.add_argument("--quick", action="store_true", help="fewer events, 3 repetitions")
    parser.add_argument("--json", action="store_true", help="one JSON line per workload")
    parser.add_argument("--repeat", type=int, help="repetitions (default 5, --quick 3)")
    parser.add_argument("--only", help="comma-separated workload letters or names, e.g. a,e")
    parser.add_argument(
        "--scale", type=float, default=1.0, help="multiply every size (e.g. 0.01 for a smoke run)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (prints its path)")
    parser.add_argument(
        "--overhead",
        action="store_true",
        help="also run b and j (of those selected) plain and with tracing on (bench/overhead.py)",
    )
    args = parser.parse_args(argv)
    if args.repeat is not None and args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.scale <= 0:
        parser.error("--scale must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    backend = BACKENDS[args.backend]()
    reason = backend.unavailable()
    if reason is not None:
        progress(f"--backend {backend.name}: {reason}")
        return 2
    sizes = Sizes.quick() if args.quick else Sizes.default()
    if args.scale != 1.0:
        sizes = sizes.scaled(args.scale)
    repeat = args.repeat or (3 if args.quick else 5)
    workloads = select(args.only, backend.name)
    load_before = os.getloadavg()
    header = (
        f"eventcore vs eventsourcing — {backend.describe()}; median of {repeat}; "
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs"
    )
    progress(header)
    progress(f"sizes: {json.dumps(asdict(sizes))}")
    rows: list[Row] = []
    overhead_rows: list[OverheadRow] = []
    started = time.perf_counter()
    root = Path(tempfile.mkdtemp(prefix="eventcore-bench-"))
    try:
        for workload in workloads:
            progress(f"{workload.name} …")
            row = measure_workload(workload, backend, sizes, repeat, root)
            rows.append(row)
            if args.json:
                print(json.dumps(asdict(row)), flush=True)
        if args.overhead:
            overhead_rows = run_overhead(workloads, backend, sizes, repeat, root)
            for extra in overhead_rows:
                if args.json:
                    print(json.dumps(extra.as_json()), flush=True)
    finally:
        backend.finish()
        if args.keep:
            progress(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    load_after = os.getloadavg()
    footer = (
        f"total {time.perf_counter() - started:.0f}s; load average (1 min) "
        f"{load_before[0]:.2f} before, {load_after[0]:.2f} after on {os.cpu_count()} CPUs"
    )
    progress(footer)
    if not args.json:
        print_table(rows, header)
        if args.overhead:
            for extra in overhead_rows:
                print(
                    f"{extra.workload} {extra.setup}: {extra.median:,.0f} {extra.unit} "
                    f"({extra.slower_pct:+.1f}% slower than plain {extra.plain:,.0f}; "
                    f"target {extra.target or '—'})"
                )
        print(footer)
    return 0


def run_overhead(
    workloads: list[Workload], backend: Backend, sizes: Sizes, repeat: int, root: Path
) -> list[OverheadRow]:
    """The overhead rows of the selected workloads that have them (b, j)."""
    from bench.overhead import WORKLOADS as OVERHEAD_WORKLOADS
    from bench.overhead import measure_overhead

    found: list[OverheadRow] = []
    for letter in sorted({workload.letter for workload in workloads} & OVERHEAD_WORKLOADS.keys()):
        progress(f"{letter} overhead …")
        found.extend(measure_overhead(letter, backend, sizes, repeat, root, progress))
    return found


def _json_default(value: Any) -> Any:  # pragma: no cover - everything is plain already
    raise TypeError(value)


if __name__ == "__main__":
    sys.exit(main())
