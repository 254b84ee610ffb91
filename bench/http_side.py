"""Workload n: commands over HTTP, 64 clients at once, through ``eventcore serve`` (the
service in ``bench/http_service.py``) and through the same endpoint as a plain Starlette
app over the ``eventsourcing`` library (``bench/http_peer.py``), both under uvicorn in a
process of their own, both on SQLite (WAL, synchronous=FULL).

Each command registers a fresh user: one event in a new stream, one durable commit. The
clients (``concurrency`` requests in flight) run in the benchmark's
process for both sides alike, each on a keep-alive connection of its own; the figure is
commands answered 200 per second, from the first request to the last answer, after a
warm-up of one request per client.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from bench.common import Context

__all__ = ["NOTE", "eventcore", "eventsourcing"]

ROOT = Path(__file__).resolve().parent.parent
NOTE = "POST /commands/Register over HTTP (uvicorn), a new stream per command"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def _environment(extra: dict[str, str]) -> dict[str, str]:
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("EVENTCORE_")}
    path = os.pathsep.join([str(ROOT / "src"), str(ROOT)])
    return {**inherited, "PYTHONPATH": path, **extra}


class _Connection:
    """One keep-alive HTTP/1.1 connection, as small as a load generator can be: httpx's
    pool spends more CPU per request than the servers measured here (on two cores it
    held both sides near 100 requests/s), so the clients would be what is measured."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    @classmethod
    async def open(cls, port: int) -> _Connection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        self._writer.write(head.encode() + body)
        status_line = await self._reader.readline()
        length = 0
        while (line := await self._reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        return int(status_line.split()[1]), await self._reader.readexactly(length)

    async def close(self) -> None:
        self._writer.close()
        await self._writer.wait_closed()


async def _ready(port: int) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
        for _ in range(600):
            try:
                if (await http.get("/health/ready")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.05)
    raise RuntimeError(f"the server on port {port} never got ready")


def _cpu_seconds(pid: int) -> float | None:
    """The user + system CPU time of process ``pid`` so far (Linux), or None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _drive(port: int, commands: int, clients: int, pid: int, facts: dict[str, str]) -> float:
    await _ready(port)
    connections = [await _Connection.open(port) for _ in range(clients)]
    numbers = iter(range(commands + clients))

    async def client(connection: _Connection, warm: bool) -> None:
        for number in numbers:
            body = f'{{"user": "user-{number}", "name": "someone"}}'.encode()
            status, answer = await connection.post("/commands/Register", body)
            if status != 200:
                raise RuntimeError(f"answered {status}: {answer[:200]!r}")
            if warm:
                return

    try:
        await asyncio.gather(*(client(each, True) for each in connections))
        cpu_before = _cpu_seconds(pid)
        started = time.perf_counter()
        await asyncio.gather(*(client(each, False) for each in connections))
        elapsed = time.perf_counter() - started
        cpu_after = _cpu_seconds(pid)
        if cpu_before is not None and cpu_after is not None:
            # The server's own CPU per command: steadier than wall clock on a busy machine.
            facts["server CPU µs/command"] = f"{(cpu_after - cpu_before) / commands * 1e6:,.0f}"
        return commands / elapsed
    finally:
        for each in connections:
            await each.close()


def _measure(argv: list[str], env: dict[str, str], ctx: Context, port: int) -> float:
    log = (ctx.workdir / "server.log").open("w")
    process = subprocess.Popen(
        argv, cwd=ROOT, env=_environment(env), stdout=log, stderr=subprocess.STDOUT
    )
    try:
        sizes = ctx.sizes
        return asyncio.run(
            _drive(port, sizes.http_commands, sizes.concurrency, process.pid, ctx.facts)
        )
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def eventcore(ctx: Context) -> float:
    port = _free_port()
    launch = "from eventcore.cli import main; main()"
    argv = [sys.executable, "-c", launch, "serve", "bench.http_service:service"]
    # --dev: no bearer tokens, as the peer asks for none; the request limits still apply.
    argv += ["--port", str(port), "--dev", "--store", ctx.backend.eventcore_url(ctx.workdir)]
    return _measure(argv, {}, ctx, port)


def eventsourcing(ctx: Context) -> float:
    port = _free_port()
    argv = [sys.executable, "-m", "uvicorn", "bench.http_peer:app", "--port", str(port)]
    argv += ["--log-level", "warning", "--no-access-log"]
    return _measure(argv, ctx.backend.eventsourcing_env(ctx.workdir), ctx, port)
