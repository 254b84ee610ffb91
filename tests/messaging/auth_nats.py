"""A throwaway nats-server (with JetStream) that demands credentials: the user ``alice``
with ``PASSWORD`` (``serve_with_auth(dir, "users")``), or ``TOKEN`` (``"token"``)."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from tests.backends import skip_or_fail
from tests.messaging.nats_server import nats_server_binary

__all__ = ["PASSWORD", "TOKEN", "free_port", "serve_with_auth"]

PASSWORD = "Wonderland-pw-7781"
TOKEN = "S3cret-token-0042"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def serve_with_auth(directory: Path, kind: str) -> Iterator[int]:
    """Run the server until the generator is closed; yields its port."""
    binary = nats_server_binary()
    if binary is None:
        skip_or_fail("no nats-server binary on this machine")
    port = free_port()
    authorization = (
        f'users = [ {{ user: alice, password: "{PASSWORD}" }} ]'
        if kind == "users"
        else f'token: "{TOKEN}"'
    )
    config = directory / "nats.conf"
    config.write_text(
        f"listen: 127.0.0.1:{port}\n"
        f"jetstream {{ store_dir: {str(directory / 'js')!r} }}\n"
        f"authorization {{ {authorization} }}\n"
    )
    process = subprocess.Popen(
        [binary, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"nats-server exited at start ({process.returncode})")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("nats-server did not start listening") from None
                time.sleep(0.02)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)
