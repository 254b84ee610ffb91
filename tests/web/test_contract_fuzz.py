"""schemathesis against ``/openapi.json`` of a served bank: across generated requests
to every documented operation, no answer is a 5xx and every answer conforms to the
document (status, content type, body schema)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.web.serving import serving

pytest.importorskip("schemathesis", reason="schemathesis is in the test extra")

CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
    ]
)


def test_no_generated_request_gets_a_5xx_or_an_undocumented_answer(tmp_path: Path) -> None:
    store, bus = f"sqlite:///{tmp_path / 'bank.db'}", f"sqlite:///{tmp_path / 'bus.db'}"
    key = "fuzz-key-0123456789abcdef"
    env = {"EVENTCORE_API_KEYS": f"fuzz:{key}"}
    with serving("--store", store, "--bus", bus, cwd=tmp_path, **env) as served:
        fuzz = ["run", f"{served.url}/openapi.json", "--checks", CHECKS, "--seed", "14"]
        fuzz += ["--header", f"Authorization: Bearer {key}"]
        done = subprocess.run(
            [sys.executable, "-m", "schemathesis.cli", *fuzz, "--max-examples", "40"],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=600,
            check=False,
        )
        code, _, err = served.stop()
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert code == 0, err
