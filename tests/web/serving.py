"""Serving in tests: ``eventcore serve`` as a real child process (``serving``), and an ASGI
app served by uvicorn on a loopback port in the test's own loop (``served``)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from starlette.types import ASGIApp

import eventcore

BANK = "eventcore.demo.bank_service:service"
#: The command line, started as the console script is (``-P``: no current directory on
#: the path; ``eventcore serve`` puts it there itself for the service's module).
EVENTCORE = [sys.executable, "-P", "-c", "from eventcore.cli import main\nmain()"]


def environment(**extra: str) -> dict[str, str]:
    """The child's environment: this eventcore and the tests importable, no inherited
    EVENTCORE_* settings."""
    source = Path(eventcore.__file__).resolve().parents[1]
    root = Path(__file__).resolve().parents[2]
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("EVENTCORE_")}
    return {**inherited, "PYTHONPATH": os.pathsep.join([str(source), str(root)]), **extra}


@dataclass
class Served:
    process: subprocess.Popen[str]
    url: str

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> tuple[int, str, str]:
        """Send ``sig``, wait for the exit; (exit code, stdout, stderr)."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        out, err = self.process.communicate(timeout=timeout)
        return self.process.returncode, out, err


def start(*args: str, cwd: Path, spec: str = BANK, **env: str) -> Served:
    process = subprocess.Popen(
        [*EVENTCORE, "serve", spec, "--port", "0", *args],
        cwd=cwd,
        env=environment(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if "listening on" not in line:
        process.kill()
        _, err = process.communicate(timeout=30)
        raise AssertionError(f"serve did not start: {line!r} {err}")
    url = line.rsplit(" ", 1)[1].strip()
    ready = process.stdout.readline()
    if ready.strip() != "serve: ready":
        process.kill()
        _, err = process.communicate(timeout=30)
        raise AssertionError(f"serve did not get ready: {ready!r} {err}")
    return Served(process, url)


@contextmanager
def serving(*args: str, cwd: Path, spec: str = BANK, **env: str) -> Iterator[Served]:
    served = start(*args, cwd=cwd, spec=spec, **env)
    try:
        yield served
    finally:
        if served.process.poll() is None:
            served.process.kill()
            served.process.communicate(timeout=30)


# --- an ASGI app in the test's own loop (the security tests) ---


class _QuietServer(uvicorn.Server):
    # The test process keeps its own signal handling.
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def served(app: ASGIApp) -> AsyncIterator[str]:
    """Serve ``app`` until the block ends; yields its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, lifespan="off", log_level="warning", access_log=False, timeout_graceful_shutdown=2
    )
    server = _QuietServer(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.005)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
