"""``ThrowawayNats``: a private nats-server with JetStream for tests that stop and start it.

It listens on a free port of 127.0.0.1 and keeps its JetStream store in its own
directory, so a test can stop the server (SIGTERM) and start it again on the same port
and store, and find its streams as they were::

    with ThrowawayNats(tmp_path) as server:
        bus = await NatsBus.connect(BusUrl.parse(server.url))
        server.stop()
        server.start()

Without the ``nats-server`` binary the test is skipped (or fails under ``CI=true``).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

from tests.backends import skip_or_fail

__all__ = ["ThrowawayNats", "nats_server_binary"]

_CANDIDATES = ("/usr/sbin/nats-server", "/usr/bin/nats-server", "/usr/local/bin/nats-server")
_READY_TIMEOUT = 10.0


def nats_server_binary() -> str | None:
    """The path of ``nats-server``, or None when this machine has none."""
    found = shutil.which("nats-server")
    if found:
        return found
    return next((path for path in _CANDIDATES if os.access(path, os.X_OK)), None)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class ThrowawayNats:
    """A nats-server process of the test's own; ``url`` stays the same across restarts."""

    def __init__(self, store_dir: Path) -> None:
        binary = nats_server_binary()
        if binary is None:
            reason = "no nats-server binary on this machine"
            skip_or_fail(reason)
        self._binary = binary
        self._store = Path(store_dir) / "jetstream"
        self._store.mkdir(parents=True, exist_ok=True)
        self.port = _free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start the server and return once it accepts connections."""
        if self._process is not None:
            return
        self._process = subprocess.Popen(
            [self._binary, "-js", "-a", "127.0.0.1", "-p", str(self.port), "-sd", str(self._store)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + _READY_TIMEOUT
        while True:
            if self._process.poll() is not None:
                code = self._process.returncode
                self._process = None
                raise RuntimeError(f"nats-server exited at start (code {code})")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("nats-server did not start listening") from None
                time.sleep(0.02)

    def stop(self) -> None:
        """SIGTERM the server and wait for it to exit (it flushes its store)."""
        process, self._process = self._process, None
        if process is None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=_READY_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def __enter__(self) -> ThrowawayNats:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
