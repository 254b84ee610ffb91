"""The README and docs/ as a reader follows them.

Each document runs from the top in an empty directory. Its Python blocks run in order in
one namespace, as one script. Its ``sh`` blocks, the command-line examples, run through
``sh -e`` where they appear, so each works on what the blocks before it left behind:
the setup of its guide. ``eventcore`` in a command is the command line of the tree
under test, started as the installed script is (the current directory is not on its
path). A command that exits non-zero fails the test.

A Python block whose first line is a comment naming a file (``# orders.py``) is that
file: it is saved under that name for the blocks and commands after it to import. A
``toml`` block is always such a file (``# hub.toml``): a configuration the blocks after
it read.

What does not run is listed here with why: the commands in ``NOT_RUN``, and, without
the PostgreSQL test server, a document from its first block that names a PostgreSQL URL
on (``skip_or_fail``: a failure under CI). Schemas in those URLs get a unique suffix
for the run and are dropped after.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from tests.backends import POSTGRES_URL, skip_or_fail

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
FENCE = re.compile(r"^```(\S*)\n(.*?)^```", re.DOTALL | re.MULTILINE)
#: The first line of a block that is a file of the reader's project, by language.
FILE_HEADERS = {
    "python": re.compile(r"#\s*([\w/]+\.py)\n"),
    "toml": re.compile(r"#\s*([\w/-]+\.toml)\n"),
}
RUN = ("python", "sh")

#: Commands of the docs the tests leave out, by how they start, and why.
NOT_RUN = {
    "pip install": "installs eventcore; the tests run the tree under test instead",
    "python -m pytest": "runs this test suite, which is what is running it",
    "python tools/mutate.py": "runs parts of this test suite once per mutant: many minutes",
}

#: A command of a document longer than this is stuck, not slow.
COMMAND_PATIENCE = 300

#: How the ``eventcore`` of the docs starts: as the installed script does, with ``-P``
#: keeping the current directory off the import path.
LAUNCH = 'import sys; sys.argv[0] = "eventcore"; from eventcore.cli import main; main()'


@dataclass(frozen=True)
class Block:
    language: str
    code: str
    #: The document's line number of the code's first line.
    line: int

    @property
    def file(self) -> str | None:
        """The file this block is, when it is one (Python or TOML)."""
        pattern = FILE_HEADERS.get(self.language)
        header = pattern.match(self.code) if pattern is not None else None
        return header.group(1) if header else None


def blocks(document: Path) -> list[Block]:
    text = document.read_text(encoding="utf-8")
    return [
        Block(match.group(1), match.group(2), text.count("\n", 0, match.start(2)) + 1)
        for match in FENCE.finditer(text)
    ]


def files(document: Path) -> dict[str, str]:
    """The files of the reader's project a document shows: name → code."""
    return {block.file: block.code for block in blocks(document) if block.file is not None}


def script(document: Path) -> str:
    """The document's Python (but its files) as one module, each block on the lines it
    has in the document: the code the doc test runs in one namespace."""
    lines = [""] * document.read_text(encoding="utf-8").count("\n")
    for block in blocks(document):
        if block.language == "python" and block.file is None:
            code = block.code.splitlines()
            lines[block.line - 1 : block.line - 1 + len(code)] = code
    return "\n".join(lines) + "\n"


def commands(block: Block) -> tuple[str, list[str]]:
    """The shell script of an ``sh`` block as the test runs it, and what it leaves out
    (``NOT_RUN``; one side of ``&&`` may be left out alone)."""
    kept_lines: list[str] = []
    left_out: list[str] = []
    for line in block.code.replace("\\\n", " ").splitlines():
        kept: list[str] = []
        for command in line.split(" && "):
            if command.strip().startswith(tuple(NOT_RUN)):
                left_out.append(command.strip())
            else:
                kept.append(command)
        if kept:
            kept_lines.append(" && ".join(kept))
    return "\n".join(kept_lines) + "\n", left_out


# A document that shows PostgreSQL names its schema in the URL.
POSTGRES_URL_IN = re.compile(r"postgres(?:ql)?://")
POSTGRES_SCHEMA = re.compile(r"(postgres(?:ql)?://[^\s\"'`]*[?&]schema=)(\w+)")


def with_unique_schemas(found: list[Block], suffix: str) -> tuple[list[Block], set[str]]:
    """The blocks with every PostgreSQL schema renamed for this run, and the new names."""
    schemas: set[str] = set()

    def rename(match: re.Match[str]) -> str:
        schemas.add(f"{match.group(2)}_{suffix}")
        return f"{match.group(1)}{match.group(2)}_{suffix}"

    renamed = [replace(block, code=POSTGRES_SCHEMA.sub(rename, block.code)) for block in found]
    return renamed, schemas


@pytest.fixture
def shell_environment(tmp_path: Path) -> dict[str, str]:
    """The environment of the docs' commands: ``eventcore`` on the PATH is this tree's,
    and no EVENTCORE_* setting of the developer's leaks in (a command says what it uses)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "eventcore"
    shim.write_text(
        "#!/bin/sh\n"
        f'PYTHONPATH="{SRC}${{PYTHONPATH:+:$PYTHONPATH}}" exec "{sys.executable}" -P'
        f" -c '{LAUNCH}' \"$@\"\n",
        encoding="utf-8",
    )
    shim.chmod(0o755)
    environment = {
        name: value for name, value in os.environ.items() if not name.startswith("EVENTCORE_")
    }
    environment["PATH"] = f"{bin_dir}{os.pathsep}{environment.get('PATH', '')}"
    environment["PYTHONPATH"] = str(SRC)
    return environment


def run_commands(document: Path, block: Block, cwd: Path, environment: dict[str, str]) -> None:
    shell_script, _ = commands(block)
    # -x echoes each command before it runs, so a failure shows which one it was.
    result = subprocess.run(
        ["sh", "-e", "-x", "-c", shell_script],
        cwd=cwd,
        env=environment,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=COMMAND_PATIENCE,
        check=False,
    )
    # The command line never answers with a traceback, even on its way to exit 0.
    if result.returncode != 0 or "Traceback (most recent call last)" in result.stderr:
        pytest.fail(
            f"{document.relative_to(ROOT)}, line {block.line}: a command exited with "
            f"{result.returncode}\n--- stderr (commands marked +) ---\n{result.stderr}"
            f"--- stdout ---\n{result.stdout}",
            pytrace=False,
        )


def run_python(document: Path, block: Block, namespace: dict[str, object]) -> None:
    # Padded so that a traceback names the document's own line numbers; dont_inherit:
    # the block must not pick up this file's `from __future__` imports.
    code = compile("\n" * (block.line - 1) + block.code, str(document), "exec", dont_inherit=True)
    exec(code, namespace)


def runnable(document: Path) -> bool:
    return any(block.language in RUN for block in blocks(document))


# Beyond the suite's minute: a document runs all its blocks and commands, servers and
# demos included (35 s measured on a busy machine); a stuck command is already ended at
# COMMAND_PATIENCE.
@pytest.mark.timeout(2 * COMMAND_PATIENCE)
@pytest.mark.parametrize(
    "document",
    [doc for doc in DOCUMENTS if runnable(doc)],
    ids=lambda doc: str(doc.relative_to(ROOT)),
)
def test_document_runs_as_written(
    document: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    shell_environment: dict[str, str],
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    # As for a script run beside the files it imports.
    monkeypatch.syspath_prepend(str(work))
    found, schemas = with_unique_schemas(blocks(document), uuid.uuid4().hex[:8])
    namespace: dict[str, object] = {"__name__": "__docs__"}
    try:
        for block in found:
            if POSTGRES_URL_IN.search(block.code):
                # What comes before it has run; the rest needs the server.
                require_postgres()
            if block.file is not None:
                (work / block.file).parent.mkdir(parents=True, exist_ok=True)
                (work / block.file).write_text(block.code, encoding="utf-8")
            elif block.language == "python":
                run_python(document, block, namespace)
            elif block.language == "sh":
                run_commands(document, block, work, shell_environment)
    finally:
        drop_schemas(schemas)
        forget_modules_in(work)


def require_postgres() -> None:
    import psycopg

    try:
        psycopg.connect(POSTGRES_URL, connect_timeout=5).close()
    except psycopg.OperationalError as error:
        reason = f"this document needs PostgreSQL at {POSTGRES_URL}: {error}"
        skip_or_fail(reason)


def drop_schemas(schemas: set[str]) -> None:
    if not schemas:
        return
    import psycopg

    with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
        for schema in schemas:
            admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def forget_modules_in(directory: Path) -> None:
    """Unload the modules a document's files became, so the next run imports its own."""
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if path is not None and Path(path).is_relative_to(directory):
            del sys.modules[name]


def test_every_code_block_is_one_the_tests_run() -> None:
    """A block in another language (or none) would be skipped without anyone noticing."""
    others = [
        f"{document.relative_to(ROOT)}:{block.line} ```{block.language}"
        for document in DOCUMENTS
        for block in blocks(document)
        if block.language not in RUN and block.file is None
    ]
    assert others == []


def test_the_commands_left_out_are_those_listed_and_each_reason_is_still_used() -> None:
    left_out = [
        command
        for document in DOCUMENTS
        for block in blocks(document)
        if block.language == "sh"
        for command in commands(block)[1]
    ]
    used = {start for start in NOT_RUN if any(c.startswith(start) for c in left_out)}
    assert used == set(NOT_RUN), "a reason in NOT_RUN no longer matches any command"


def test_readme_quick_start_has_exactly_two_commands() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Quick start", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert block is not None
    commands = [line for line in block.group(1).splitlines() if line.strip()]
    assert len(commands) == 2
    assert "eventcore demo" in commands[0]
    assert "pytest" in commands[1]


# --- what the documents name -----------------------------------------------------------

#: Texts that may name documents: the docs, and the code's docstrings and comments.
NAMING = [
    *DOCUMENTS,
    *sorted(path for folder in ("src", "tests", "bench") for path in (ROOT / folder).rglob("*.py")),
]
MENTION = re.compile(r"(?<![\w/.:*-])((?:\.\./|[\w-]+/)*[\w-]+\.md)(?:#([\w-]+))?")
LINK = re.compile(r"\]\(([^)\s]*)\)")


def anchors(document: Path) -> set[str]:
    """The section anchors a renderer gives a document's headings (as GitHub does)."""
    headings = re.findall(r"^#+ (.+)$", document.read_text(encoding="utf-8"), re.MULTILINE)
    return {
        re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-") for heading in headings
    }


def broken(source: Path, target: Path, anchor: str | None, named: str) -> str | None:
    if not target.exists():
        return f"{source.relative_to(ROOT)} names {named}, which is not in the repository"
    if anchor and anchor not in anchors(target):
        return f"{source.relative_to(ROOT)} names {named}: {target.name} has no such section"
    return None


def test_every_document_and_section_named_exists() -> None:
    problems: list[str] = []
    for source in NAMING:
        text = source.read_text(encoding="utf-8")
        if source.suffix == ".md":
            # Links resolve from the document's own folder, as a renderer does.
            for link in LINK.findall(text):
                if re.match(r"[a-z]+:", link):
                    continue
                path, _, anchor = link.partition("#")
                target = (source.parent / path).resolve() if path else source
                problems.append(broken(source, target, anchor or None, link) or "")
            text = LINK.sub("", text)
        # Mentions in prose and docstrings are paths from the repository's root.
        for path, anchor in MENTION.findall(text):
            target = ROOT / path if (ROOT / path).is_file() else source.parent / path
            problems.append(broken(source, target, anchor or None, path) or "")
    problems = [problem for problem in problems if problem]
    assert not problems, "\n".join(problems)


#: A path to a Python file as prose names one: from the repository's root (``tests/…``,
#: ``src/…``, ``bench/…``, ``tools/…``), or inside the package (``store/sqlite/_write.py``), maybe
#: with a glob (``test_contract_*.py``) and a test (``::test_name``).
PY_MENTION = re.compile(r"(?<![\w/.*-])((?:[\w*-]+/)+[\w*-]+\.py)(?:::(\w+))?")
PACKAGE = SRC / "eventcore"


def missing_python(source: Path, path: str, test: str | None) -> str | None:
    """Why ``path`` (and ``test`` in it) named in ``source`` does not resolve, or None."""
    top = path.split("/", 1)[0]
    if top == "src" and not path.startswith("src/eventcore/"):
        return None  # another project's tree, as a test's sample data
    if top in {"tests", "src", "bench", "tools"}:
        found = sorted(ROOT.glob(path))
    elif top == "eventcore":
        found = sorted(SRC.glob(path))
    else:
        # A module named by its path in the package, from any level of it (a section
        # about the messaging layer names ``nats/_consumer.py``).
        found = sorted(PACKAGE.glob(path)) or sorted(PACKAGE.glob(f"**/{path}"))
    if not found:
        return f"{source.relative_to(ROOT)} names {path}, which is not in the repository"
    if test is not None and not any(
        re.search(rf"^(?:async )?def {test}\b", file.read_text(encoding="utf-8"), re.MULTILINE)
        for file in found
    ):
        return f"{source.relative_to(ROOT)} names {path}::{test}, which has no such test"
    return None


def test_every_python_file_and_test_named_exists() -> None:
    """A module moved or a test renamed leaves no pointer to where it was."""
    problems = [
        missing_python(source, path, test or None)
        for source in NAMING
        if source != Path(__file__)
        for path, test in PY_MENTION.findall(source.read_text(encoding="utf-8"))
    ]
    problems = [problem for problem in problems if problem]
    assert not problems, "\n".join(problems)


def test_the_readme_names_every_test_server_the_suite_uses() -> None:
    """Whoever runs the suite learns from the README which servers it uses and how to
    point it at others."""
    suite = "\n".join(path.read_text(encoding="utf-8") for path in (ROOT / "tests").rglob("*.py"))
    settings = set(re.findall(r"\bEVENTCORE_TEST_[A-Z_]+\b", suite))
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert settings, "the suite reads no test server setting any more: update this test"
    assert sorted(setting for setting in settings if setting not in readme) == []
