"""Child processes for the kill tests: start a test module as its own process, wait for
the line it prints once it works, ``kill -9`` it, start it again, stop it with SIGTERM.

Used by the tests that kill real processes (``tests/projection/test_leadership.py``,
``tests/messaging/test_crash.py``, ``tests/federation/test_hub_crash.py``). Each child
is ``python -m <module> <args>`` run from the repository root with this tree's ``src``
first on its path. Its stdout is a pipe the test reads lines from (``line``), or, when
the test does not listen, a log file beside its stderr's; ``tail`` shows the end of
every log of every start, for a failure message.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
#: Only a hang reaches these: a child imports the package and opens its stores.
START_DEADLINE = 60.0
STOP_DEADLINE = 30.0


class ChildProcess:
    """``python -m module *args``, started again after each kill.

    ``logs``: a directory for each start's stderr (``<name>-<n>.log``); without it
    stderr is the test's own. ``listen``: keep stdout as a pipe for ``line`` (the
    child must then print little, or be read); otherwise stdout goes to the log.
    ``environment``: variables set for the child on top of the test's own."""

    def __init__(
        self,
        module: str,
        *args: str,
        name: str | None = None,
        logs: Path | None = None,
        listen: bool = True,
        environment: Mapping[str, str] | None = None,
    ) -> None:
        self.module = module
        self.args = args
        self.name = name or module.rpartition(".")[2]
        self.logs = logs
        self.listen = listen
        self.environment = dict(environment or {})
        self.process: asyncio.subprocess.Process | None = None
        self.starts = 0
        self.kills = 0
        self.log_files: list[Path] = []
        #: The lines ``line`` has read since the last start (``start`` reads some).
        self.output: list[bytes] = []

    @property
    def pid(self) -> int:
        assert self.process is not None, f"{self.name} was never started"
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def start(self, *, ready: bytes | None = b"ready") -> None:
        """Start it; with ``ready``, wait until a line that starts with it comes
        (stdout is then a pipe for this start even when not ``listen``ing)."""
        self.starts += 1
        self.output = []
        environment = {
            **os.environ,
            **self.environment,
            "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]),
        }
        stderr: Any = None
        log = None
        if self.logs is not None:
            path = self.logs / f"{self.name}-{self.starts}.log"
            self.log_files.append(path)
            log = path.open("wb")
            stderr = log
        piped = self.listen or ready is not None
        try:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", self.module, *self.args,
                stdout=asyncio.subprocess.PIPE if piped else (log or asyncio.subprocess.DEVNULL),
                stderr=stderr, cwd=ROOT, env=environment,
            )  # fmt: skip
        finally:
            if log is not None:
                log.close()
        if ready is not None:
            try:
                async with asyncio.timeout(START_DEADLINE):
                    while not (line := await self.line()).startswith(ready):
                        if not line:
                            raise AssertionError(f"{self.name} ended before {ready!r}")
            except (TimeoutError, AssertionError) as failure:
                raise AssertionError(
                    f"{self.name} did not start: {failure}\n{self.tail()}"
                ) from None

    async def line(self) -> bytes:
        """Its next line of output, without the newline (b"" once it has ended)."""
        assert self.process is not None, self.name
        assert self.process.stdout is not None, f"{self.name}'s output is not a pipe"
        line = (await self.process.stdout.readline()).rstrip(b"\n")
        self.output.append(line)
        return line

    async def kill(self) -> None:
        """``kill -9``; it must have been running (a child that died by itself is a
        failure of its own, not a kill)."""
        process = self.process
        assert process is not None
        assert process.returncode is None, f"{self.name} died by itself\n{self.tail()}"
        os.kill(process.pid, signal.SIGKILL)
        await process.wait()
        self.kills += 1

    def pause(self) -> None:
        """``SIGSTOP``: frozen as a paused VM or a stalled machine freezes it."""
        assert self.alive, f"{self.name} is not running\n{self.tail()}"
        os.kill(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """``SIGCONT``: it carries on from where it froze."""
        os.kill(self.pid, signal.SIGCONT)

    async def stop(self, deadline: float = STOP_DEADLINE) -> int | None:
        """SIGTERM, and its exit code once it has ended; None if it never started. One
        still running after ``deadline`` is killed, and that is an ``AssertionError``."""
        process = self.process
        if process is None:
            return None
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(deadline):
                code = await process.wait()
                if process.stdout is not None:
                    # What it said on its way out, for the test to read in ``output``.
                    rest = await process.stdout.read()
                    self.output.extend(rest.splitlines())
                return code
        except TimeoutError:
            self.ensure_dead()
            await process.wait()
            raise AssertionError(f"{self.name} did not stop on SIGTERM\n{self.tail()}") from None

    def ensure_dead(self) -> None:
        """For ``finally`` blocks: no child outlives its test."""
        process = self.process
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGKILL)

    def tail(self, size: int = 2000) -> str:
        return "".join(
            f"--- {path.name}\n{path.read_text(errors='replace')[-size:]}"
            for path in self.log_files
            if path.exists()
        )
