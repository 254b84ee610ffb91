"""``eventcore demo``: run the bank on a real store and check what it wrote.

Without ``--store`` it runs on the embedded default, a fresh SQLite file in a temporary
directory that is removed afterwards. The demo does not read ``EVENTCORE_STORE``: it
writes, so writing into a store must be asked for by name.
"""

from __future__ import annotations

import asyncio
import random
import tempfile
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from eventcore.cli import render
from eventcore.cli.errors import EXIT_FAILURE, EXIT_INTERRUPTED, fail, reported
from eventcore.cli.options import with_connect_timeout
from eventcore.demo.bank_run import BankRun, Tally, run_bank
from eventcore.store import open_store

__all__ = ["MAX_ACCOUNTS", "MAX_CONCURRENCY", "MAX_SEED", "MAX_TRANSFERS", "demo"]

# A demo is a few seconds to a few minutes on a laptop; past these it would only hang
# (building ids, tasks or transfers by the billion) before doing anything to see.
MAX_ACCOUNTS = 10_000
MAX_TRANSFERS = 1_000_000
#: Writers racing on a handful of accounts: past a thousand, only conflicts grow.
MAX_CONCURRENCY = 1_000
#: The demo draws its own seeds from this range too.
MAX_SEED = 2**32 - 1


def demo(
    store: Annotated[
        str | None,
        typer.Option(
            "--store",
            metavar="URL",
            help="Run on this store instead of a fresh temporary SQLite file.",
        ),
    ] = None,
    accounts: Annotated[
        int,
        typer.Option("--accounts", min=2, max=MAX_ACCOUNTS, help="Accounts to open."),
    ] = 20,
    transfers: Annotated[
        int,
        typer.Option("--transfers", min=0, max=MAX_TRANSFERS, help="Transfers to attempt."),
    ] = 1000,
    concurrency: Annotated[
        int,
        typer.Option(
            "--concurrency", min=1, max=MAX_CONCURRENCY, help="Transfers in flight at once."
        ),
    ] = 16,
    seed: Annotated[
        int | None,
        typer.Option(
            "--seed",
            min=0,
            max=MAX_SEED,
            help="Seed for who pays whom and how much (random if unset).",
        ),
    ] = None,
) -> None:
    """Run a bank with concurrent transfers, then check its history from the store.

    Exits 0 only if every check holds: money is conserved, no account is overdrawn,
    every transfer is whole, stream versions are contiguous, ids and positions unique.
    """
    chosen_seed = seed if seed is not None else random.SystemRandom().randrange(MAX_SEED + 1)
    with reported():
        try:
            if store is not None:
                run = asyncio.run(_run(store, accounts, transfers, concurrency, chosen_seed))
            else:
                with tempfile.TemporaryDirectory(prefix="eventcore-demo-") as workdir:
                    url = f"sqlite://{Path(workdir).resolve().as_posix()}/bank.db"
                    run = asyncio.run(_run(url, accounts, transfers, concurrency, chosen_seed))
        except KeyboardInterrupt:
            fail("interrupted", EXIT_INTERRUPTED)
    shown = store if store is not None else "a temporary SQLite file (pass --store to keep it)"
    console = render.stdout()
    console.print(_summary(run, shown))
    console.print(_checks(run))
    broken = [check for check in run.checks if not check.ok]
    if broken:
        names = ", ".join(check.name for check in broken)
        fail(f"{len(broken)} of {len(run.checks)} checks failed: {names}", EXIT_FAILURE)
    console.print(Text(f"all {len(run.checks)} checks hold", style="bold green"))


async def _run(url: str, accounts: int, transfers: int, concurrency: int, seed: int) -> BankRun:
    store = await open_store(with_connect_timeout(url))
    try:
        # The bar goes to stderr: it is for the person watching, the summary is the result.
        with _progress(render.stderr()) as progress:
            task = progress.add_task(
                "transfers", total=transfers, completed_ok=0, rejected=0, retries=0
            )
            return await run_bank(
                store,
                accounts=accounts,
                transfers=transfers,
                concurrency=concurrency,
                seed=seed,
                on_progress=lambda tally: _advance(progress, task, tally),
            )
    finally:
        await store.aclose()


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(
            "[green]{task.fields[completed_ok]} done[/]  "
            "[yellow]{task.fields[rejected]} rejected[/]  "
            "[cyan]{task.fields[retries]} conflicts retried[/]"
        ),
        TimeElapsedColumn(),
        console=console,
    )


def _advance(progress: Progress, task: TaskID, tally: Tally) -> None:
    progress.update(
        task,
        completed=tally.decided,
        completed_ok=tally.completed,
        rejected=tally.rejected,
        retries=tally.retries,
    )


def _summary(run: BankRun, store: str) -> Table:
    tally = run.tally
    seconds = max(run.seconds, 1e-9)
    written = 2 * tally.completed
    table = Table(title=Text("bank demo", style="bold"), show_header=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    table.add_row("store", store)
    table.add_row("accounts", f"{len(run.accounts)} ({run.prefix}/…), {run.total:,} in all")
    table.add_row("transfers", f"{tally.planned:,}")
    table.add_row("  completed", f"{tally.completed:,}")
    table.add_row("  rejected", f"{tally.rejected:,} ({tally.overdrafts:,} for insufficient funds)")
    if tally.failed:
        table.add_row("  failed", f"{tally.failed:,}: " + "; ".join(tally.failures))
    table.add_row("conflicts retried", f"{tally.retries:,}")
    table.add_row("events read back", f"{run.events:,}")
    table.add_row("time", f"{run.seconds:.2f} s")
    table.add_row(
        "throughput",
        f"{tally.decided / seconds:,.0f} transfers/s, {written / seconds:,.0f} events written/s",
    )
    table.add_row("seed", str(run.seed))
    return table


def _checks(run: BankRun) -> Table:
    table = Table(title=Text("checks", style="bold"), header_style="bold")
    table.add_column("", no_wrap=True)
    table.add_column("invariant")
    table.add_column("what broke it", overflow="fold")
    for check in run.checks:
        mark = Text("✓", style="green") if check.ok else Text("✗", style="bold red")
        detail = "; ".join(check.problems)
        if check.violations > len(check.problems):
            detail += f" (and {check.violations - len(check.problems)} more)"
        table.add_row(mark, check.name, detail)
    return table
