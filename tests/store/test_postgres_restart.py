"""The PostgreSQL store across a server outage, on a throwaway server of its own.

The shared server is never stopped: this test runs ``initdb`` and ``pg_ctl`` (as the
``postgres`` user) in a temporary directory on a free port, and stops that server by the
process id in its ``postmaster.pid``.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from eventcore.errors import StoreUnavailable
from eventcore.store.postgres import PostgresStore
from tests.builders import events, sid

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def _as_postgres(*command: str) -> None:
    subprocess.run(
        ["runuser", "-u", "postgres", "--", *command], check=True, capture_output=True, timeout=120
    )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Server:
    """A private PostgreSQL cluster: ``start`` and ``stop`` (by its postmaster's pid)."""

    def __init__(self, root: Path, port: int) -> None:
        self.data = root / "data"
        self.root = root
        self.port = port

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
            " -c max_connections=20"
        )
        _as_postgres(
            str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "log"),
            "-o", options, "-w", "start",
        )  # fmt: skip

    def pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (FileNotFoundError, IndexError, ValueError):
            return None

    def stop(self) -> None:
        pid = self.pid()
        if pid is None:
            return
        os.kill(pid, signal.SIGINT)  # fast shutdown: clients are disconnected at once
        for _ in range(3000):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.01)  # polls for the process to exit
        raise AssertionError(f"throwaway PostgreSQL (pid {pid}) did not stop")


@pytest.fixture
def server() -> Iterator[Server]:
    if not (PG_BIN / "initdb").exists() or shutil.which("runuser") is None:
        pytest.skip("initdb or runuser is not available to start a throwaway server")
    if os.geteuid() != 0:
        pytest.skip("starting a throwaway server as the postgres user needs root")
    root = Path(tempfile.mkdtemp(prefix="eventcore-pg-"))
    shutil.chown(root, "postgres")
    server = Server(root, _free_port())
    try:
        _as_postgres(
            str(PG_BIN / "initdb"), "-D", str(server.data), "-A", "trust", "-U", "postgres"
        )
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


async def _append_until_it_works(store: PostgresStore, stream_version: int) -> int:
    """Append once the store has reconnected; how many attempts failed meanwhile."""
    stream = sid("after-restart")
    for failures in range(60):
        try:
            await store.append({stream: events(1)}, expected={stream: stream_version})
        except StoreUnavailable:
            await asyncio.sleep(0.5)  # polls for the pool to reconnect
            continue
        return failures
    raise AssertionError("the store did not recover after the restart")


async def test_store_is_unavailable_while_the_server_is_down_and_recovers(server: Server) -> None:
    url = (
        f"postgresql://postgres@127.0.0.1:{server.port}/postgres"
        "?pool_size=4&pool_timeout=2&connect_timeout=2"
    )
    async with await PostgresStore.open(url) as store:
        before = await store.append({sid("s"): events(3)}, expected={sid("s"): 0})

        await asyncio.to_thread(server.stop)
        with pytest.raises(StoreUnavailable):
            await store.append({sid("s"): events(1)}, expected={sid("s"): 3})
        with pytest.raises(StoreUnavailable):
            await store.read_stream(sid("s"))

        await asyncio.to_thread(server.start)
        await _append_until_it_works(store, 0)

        assert [e.event_id for e in await store.read_stream(sid("s"))] == list(before.event_ids)
        assert await store.stream_version(sid("after-restart")) == 1
