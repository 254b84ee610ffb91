"""Every Python block in the README and in docs/ runs, as a reader would paste it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def python_blocks(document: Path) -> list[str]:
    return BLOCK.findall(document.read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    "document",
    [doc for doc in DOCUMENTS if python_blocks(doc)],
    ids=lambda doc: str(doc.relative_to(ROOT)),
)
def test_document_code_runs(
    document: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The blocks of one document build on each other, so they run in one namespace.
    monkeypatch.chdir(tmp_path)
    source = "\n\n".join(python_blocks(document))
    namespace: dict[str, object] = {"__name__": "__docs__"}
    # dont_inherit: the blocks must not pick up this file's `from __future__` imports.
    exec(compile(source, str(document), "exec", dont_inherit=True), namespace)


def test_readme_quick_start_has_exactly_two_commands() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Quick start", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert block is not None
    commands = [line for line in block.group(1).splitlines() if line.strip()]
    assert len(commands) == 2
    assert "eventcore demo" in commands[0]
    assert "pytest" in commands[1]
