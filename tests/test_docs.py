"""Every Python block in the README and in docs/ runs, as a reader would paste it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.backends import POSTGRES_URL, skip_or_fail

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
    schemas = POSTGRES_SCHEMA.findall(source)
    if schemas:
        require_postgres()
    namespace: dict[str, object] = {"__name__": "__docs__"}
    try:
        # dont_inherit: the blocks must not pick up this file's `from __future__` imports.
        exec(compile(source, str(document), "exec", dont_inherit=True), namespace)
    finally:
        drop_schemas(schemas)


# A document that shows PostgreSQL names its schema in the URL; the test drops it after.
POSTGRES_SCHEMA = re.compile(r"postgresql://[^\s\"']*[?&]schema=(\w+)")


def require_postgres() -> None:
    import psycopg

    try:
        psycopg.connect(POSTGRES_URL, connect_timeout=5).close()
    except psycopg.OperationalError as error:
        reason = f"this document needs PostgreSQL at {POSTGRES_URL}: {error}"
        skip_or_fail(reason)


def drop_schemas(schemas: list[str]) -> None:
    if not schemas:
        return
    import psycopg

    with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
        for schema in set(schemas):
            admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def test_readme_quick_start_has_exactly_two_commands() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Quick start", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert block is not None
    commands = [line for line in block.group(1).splitlines() if line.strip()]
    assert len(commands) == 2
    assert "eventcore demo" in commands[0]
    assert "pytest" in commands[1]
