"""The docs' Python type-checks under ``mypy --strict``, as a reader's checker sees it.

Each document's blocks are one module, on the lines they have in the document, as
tests/test_docs.py runs them in one namespace; a block that is a file of the reader's
project (``# orders.py``) is that module beside it. ``eventcore`` is this tree's.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_docs import DOCUMENTS, ROOT, SRC, blocks, files, script


def has_python(document: Path) -> bool:
    return any(block.language == "python" for block in blocks(document))


@pytest.mark.parametrize(
    "document",
    [doc for doc in DOCUMENTS if has_python(doc)],
    ids=lambda doc: str(doc.relative_to(ROOT)),
)
def test_document_code_is_clean_under_mypy_strict(document: Path, tmp_path: Path) -> None:
    for name, code in files(document).items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(code, encoding="utf-8")
    # A module name of its own, so that it cannot shadow a file the document shows.
    module = tmp_path / "document_under_check.py"
    module.write_text(script(document), encoding="utf-8")
    environment = {**os.environ, "MYPYPATH": f"{SRC}{os.pathsep}{tmp_path}"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-color-output",
            # The tree's cache: warm after the first run, and never the project's config
            # (mypy runs in tmp_path, where there is none).
            "--cache-dir",
            str(ROOT / ".mypy_cache" / "docs"),
            module.name,
        ],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        check=False,
    )
    # Line numbers are the document's own.
    report = result.stdout.replace(module.name, str(document.relative_to(ROOT)))
    assert result.returncode == 0, report + result.stderr
