"""Mutation testing: would the tests notice a small, deliberate slip in the code?

    python tools/mutate.py SOURCE... [options] -- PYTEST-ARGS...

For example::

    python tools/mutate.py src/eventcore/projection/follower.py -- tests/projection/test_follower.py

Each mutant is the source with one small change (an operator below). The tool runs the
tests once unchanged, tracing which test runs which line; then, for each mutant, it runs
``pytest -x -q -p no:cacheprovider PYTEST-ARGS`` narrowed to the tests that run the
mutated lines, fastest first. A mutant is *killed* when a test fails, *timeout* when the
run hangs (past ``--timeout``, or a test's own pytest-timeout), *survived* when every test
passes, and *uncovered* when no test runs its lines (it is not run: it would survive).
Code run only in a subprocess of a test is not traced, so it reads as uncovered.

The working tree is never changed: the project (the nearest folder above the first
SOURCE holding pyproject.toml) is copied to a temporary folder once per job, and its
``src/`` is put first on the tests' import path. The copies are removed at the end, on
Ctrl-C and on SIGTERM.

Operators: ``compare`` (``<``/``<=``, ``>``/``>=``, ``==``/``!=``, ``is``/``is not``,
``in``/``not in``), ``number`` (an int ``n`` to ``n+1`` and ``n-1``; ``True``/``False``
swapped), ``arith`` (``+``/``-``), ``boolean`` (``and``/``or``), ``not`` (dropped),
``condition`` (an ``if``/``while``/ternary test forced ``True`` and ``False``), ``return``
(``return x`` to ``return None``; ``return`` as a function's first statement), ``delete``
(a call or assignment statement replaced by ``pass``, in a function or class body) and
``arguments`` (two adjacent positional arguments swapped, neither a literal). A local
name's assignment is not deleted (its next read fails on every path). Annotations,
parameter defaults, decorators, ``assert``, ``if TYPE_CHECKING:`` blocks, f-strings,
logging calls (``*.debug(...)`` and friends) and lines marked ``# pragma: no mutate`` are
left alone.

A mutant's id (``follower:LogFollower.reached:compare:3f9a0c1d``) is derived from its
file, function, operator and the changed text, so it stays the same across runs and
while other functions change. ``--equivalent FILE`` names mutants judged equivalent (one
id a line; ``#`` starts a comment, the place for the argument): they are not run and
leave the score's denominator. Score = (killed + timeout) / (mutants - equivalent).
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import copy
import difflib
import hashlib
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

TOOLS = Path(__file__).resolve().parent
PRAGMA = "pragma: no mutate"
#: Calls whose deletion only silences a log line: the usual logging method names.
LOG_METHODS = frozenset(
    {"debug", "info", "warning", "warn", "error", "exception", "critical", "log"}
)
COPY_IGNORE = shutil.ignore_patterns(
    ".git", "__pycache__", "*.pyc", ".mypy_cache", ".ruff_cache", ".pytest_cache",
    ".hypothesis", "*.egg-info", ".venv", "venv", "build", "dist", "node_modules",
)  # fmt: skip
#: What pytest-timeout and the suite's teardown watchdog print when a test hangs.
HANG = re.compile(r"Timeout \(>[\d.]+s\) from pytest-timeout|Timeout \(\d+:\d\d:\d\d\)!")
COMPARE_SWAPS: dict[type[ast.cmpop], tuple[type[ast.cmpop], str, str]] = {
    ast.Lt: (ast.LtE, r"<(?!=)", "<="),
    ast.LtE: (ast.Lt, r"<=", "<"),
    ast.Gt: (ast.GtE, r">(?!=)", ">="),
    ast.GtE: (ast.Gt, r">=", ">"),
    ast.Eq: (ast.NotEq, r"==", "!="),
    ast.NotEq: (ast.Eq, r"!=", "=="),
    ast.Is: (ast.IsNot, r"\bis\b", "is not"),
    ast.IsNot: (ast.Is, r"\bis\s+not\b", "is"),
    ast.In: (ast.NotIn, r"\bin\b", "not in"),
    ast.NotIn: (ast.In, r"\bnot\s+in\b", "in"),
}


# --- mutants ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mutant:
    id: str
    path: str  #: relative to the project, with forward slashes
    line: int  #: the first changed line
    probe: tuple[int, int]  #: the lines whose coverage decides whether it can be killed
    function: str  #: qualified name of the enclosing function, or "<module>"
    operator: str
    diff: tuple[str, ...]  #: the changed lines, "- old" / "+ new"
    source: str  #: the whole mutated file


@dataclass
class _Candidate:
    operator: str
    node: ast.AST  #: positions: the probe lines
    start: int  #: byte offsets of the text replaced
    end: int
    text: str
    apply: Callable[[], Callable[[], None]]  #: the same change on the tree; returns its undo


class _Generator(ast.NodeVisitor):
    """Walks one module and proposes candidate edits; ``mutants`` checks each."""

    def __init__(self, path: str, source: str) -> None:
        self.path = path
        self.data = source.encode()
        self.lines = source.splitlines(keepends=True)
        self.starts = [0]
        for line in self.data.splitlines(keepends=True):
            self.starts.append(self.starts[-1] + len(line))
        self.tree = ast.parse(source)
        self.parents = {
            id(child): parent
            for parent in ast.walk(self.tree)
            for child in ast.iter_child_nodes(parent)
        }
        self.scope: list[str] = []
        self.candidates: list[tuple[str, _Candidate]] = []

    # positions -------------------------------------------------------------------------
    def offset(self, line: int, col: int) -> int:
        return self.starts[line - 1] + col

    def span(self, node: ast.AST) -> tuple[int, int]:
        start = self.offset(node.lineno, node.col_offset)  # type: ignore[attr-defined]
        return start, self.offset(node.end_lineno, node.end_col_offset)  # type: ignore[attr-defined]

    def text(self, start: int, end: int) -> str:
        return self.data[start:end].decode()

    # proposing -------------------------------------------------------------------------
    def propose(self, operator: str, node: ast.AST, start: int, end: int, text: str,
                apply: Callable[[], Callable[[], None]]) -> None:  # fmt: skip
        function = ".".join(self.scope) or "<module>"
        self.candidates.append((function, _Candidate(operator, node, start, end, text, apply)))

    def replace_node(self, operator: str, node: ast.AST, new: ast.AST, text: str) -> None:
        """Propose ``node`` replaced by ``new``, written as ``text``."""
        parent = self.parents[id(node)]

        def apply() -> Callable[[], None]:
            return _replace_child(parent, node, new)

        self.propose(operator, node, *self.span(node), text, apply)

    def replace_between(self, operator: str, node: ast.AST, left: ast.AST, right: ast.AST,
                        pattern: str, symbol: str, new: ast.AST) -> None:  # fmt: skip
        """Propose the operator written between ``left`` and ``right`` changed to ``symbol``;
        where that text is not plain, ``node`` rewritten whole as ``new``."""
        start, end = self.span(left)[1], self.span(right)[0]
        between = self.text(start, end)
        if len(re.findall(pattern, between)) == 1 and "#" not in between:
            text = re.sub(pattern, symbol, between)
            parent = self.parents[id(node)]
            self.propose(
                operator, node, start, end, text, lambda: _replace_child(parent, node, new)
            )
        else:
            self.replace_node(operator, node, new, ast.unparse(new))

    # scopes and what is left alone ----------------------------------------------------
    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.scope.append(node.name)
        self.early_return(node)
        for statement in node.body:
            self.visit(statement)
        self.scope.pop()

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self.scope.append(node.name)
        for statement in node.body:
            self.visit(statement)
        self.scope.pop()

    def visit_If(self, node: ast.If) -> None:
        test = node.test
        if (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
            isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
        ):
            return
        self.force_condition(node.test)
        self.generic_visit(node)

    def visit_While(self, node: ast.While) -> None:
        self.force_condition(node.test)
        self.generic_visit(node)

    def visit_IfExp(self, node: ast.IfExp) -> None:
        self.force_condition(node.test)
        self.generic_visit(node)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is not None:
            if not isinstance(node.target, ast.Name):
                self.delete(node)
            self.visit(node.value)

    def visit_Assert(self, node: ast.Assert) -> None:
        pass

    def visit_JoinedStr(self, node: ast.JoinedStr) -> None:
        pass

    # operators -------------------------------------------------------------------------
    def visit_Compare(self, node: ast.Compare) -> None:
        operands = [node.left, *node.comparators]
        for index, op in enumerate(node.ops):
            swap = COMPARE_SWAPS.get(type(op))
            if swap is not None:
                new_op, pattern, symbol = swap
                new = copy.copy(node)
                new.ops = [*node.ops[:index], new_op(), *node.ops[index + 1 :]]
                left, right = operands[index], operands[index + 1]
                self.replace_between("compare", node, left, right, pattern, symbol, new)
        self.generic_visit(node)

    def visit_BoolOp(self, node: ast.BoolOp) -> None:
        new = copy.copy(node)
        new.op = ast.Or() if isinstance(node.op, ast.And) else ast.And()
        word = "or" if isinstance(node.op, ast.And) else "and"
        self.replace_node("boolean", node, new, _write_boolop(self, node, word))
        self.generic_visit(node)

    def visit_BinOp(self, node: ast.BinOp) -> None:
        if isinstance(node.op, ast.Add | ast.Sub) and not _is_text(node.left, node.right):
            new = copy.copy(node)
            new.op = ast.Sub() if isinstance(node.op, ast.Add) else ast.Add()
            pattern, symbol = (r"\+", "-") if isinstance(node.op, ast.Add) else (r"-", "+")
            self.replace_between("arith", node, node.left, node.right, pattern, symbol, new)
        self.generic_visit(node)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self.delete(node)
        if isinstance(node.op, ast.Add | ast.Sub) and not _is_text(node.value):
            new = copy.copy(node)
            new.op = ast.Sub() if isinstance(node.op, ast.Add) else ast.Add()
            pattern, symbol = (r"\+=", "-=") if isinstance(node.op, ast.Add) else (r"-=", "+=")
            self.replace_between("arith", node, node.target, node.value, pattern, symbol, new)
        self.visit(node.value)

    def visit_UnaryOp(self, node: ast.UnaryOp) -> None:
        if isinstance(node.op, ast.Not):
            operand = self.text(*self.span(node.operand))
            self.replace_node("not", node, node.operand, operand)
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        value = node.value
        if isinstance(value, bool):
            self.replace_node("number", node, ast.Constant(not value), repr(not value))
        elif isinstance(value, int):
            for changed in (value + 1, value - 1):
                self.replace_node("number", node, _number(changed), repr(changed))

    def visit_Return(self, node: ast.Return) -> None:
        value = node.value
        if value is not None and not (isinstance(value, ast.Constant) and value.value is None):
            self.replace_node("return", node, ast.Return(ast.Constant(None)), "return None")
            self.visit(value)

    def visit_Assign(self, node: ast.Assign) -> None:
        # A local name's assignment is not deleted: its next read fails on every path.
        if not all(isinstance(target, ast.Name) for target in node.targets):
            self.delete(node)
        self.visit(node.value)

    def visit_Expr(self, node: ast.Expr) -> None:
        call = node.value.value if isinstance(node.value, ast.Await) else node.value
        if isinstance(call, ast.Call) and not _is_log_call(call):
            self.delete(node)
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        args = node.args
        if not any(isinstance(arg, ast.Starred) for arg in args):
            for index in range(len(args) - 1):
                self.swap_arguments(node, index)
        self.generic_visit(node)

    # edits built from several nodes ------------------------------------------------------
    def force_condition(self, test: ast.expr) -> None:
        if not isinstance(test, ast.Constant):
            for value in (True, False):
                self.replace_node("condition", test, ast.Constant(value), repr(value))

    def delete(self, statement: ast.stmt) -> None:
        if self.scope:  # at module level, a deleted assignment only breaks the import
            self.replace_node("delete", statement, ast.Pass(), "pass")

    def early_return(self, function: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        body = function.body
        first = 1 if _is_docstring(body[0]) else 0
        if first >= len(body):
            return
        rest = body[first:]
        if len(rest) == 1 and isinstance(rest[0], ast.Return | ast.Pass | ast.Raise):
            return
        if (
            len(rest) == 1
            and isinstance(rest[0], ast.Expr)
            and isinstance(rest[0].value, ast.Constant)
        ):
            return
        statement = rest[0]
        start = self.offset(statement.lineno, statement.col_offset)
        indent = " " * statement.col_offset

        def apply() -> Callable[[], None]:
            body.insert(first, ast.Return(None))
            return lambda: body.remove(body[first])

        self.propose("return", statement, start, start, f"return\n{indent}", apply)

    def swap_arguments(self, call: ast.Call, index: int) -> None:
        args = call.args
        left, right = args[index], args[index + 1]
        if isinstance(left, ast.Constant) or isinstance(right, ast.Constant):
            return  # a literal in the wrong place mostly fails on its type: little to learn
        (a_start, a_end), (b_start, b_end) = self.span(left), self.span(right)
        a_text, b_text = self.text(a_start, a_end), self.text(b_start, b_end)
        if a_text == b_text:
            return
        text = b_text + self.text(a_end, b_start) + a_text

        def apply() -> Callable[[], None]:
            args[index], args[index + 1] = right, left
            return lambda: args.__setitem__(slice(index, index + 2), [left, right])

        self.propose("arguments", call, a_start, b_end, text, apply)


def _replace_child(parent: ast.AST, old: ast.AST, new: ast.AST) -> Callable[[], None]:
    for name, value in ast.iter_fields(parent):
        if value is old:
            setattr(parent, name, new)
            return lambda: setattr(parent, name, old)
        if isinstance(value, list) and any(item is old for item in value):
            index = next(i for i, item in enumerate(value) if item is old)
            value[index] = new
            return lambda: value.__setitem__(index, old)
    raise ValueError(f"{old!r} is not a child of {parent!r}")


def _write_boolop(generator: _Generator, node: ast.BoolOp, word: str) -> str:
    """``node`` with its operator words changed, its operands' text kept as written."""
    start, end = generator.span(node)
    spans = [generator.span(value) for value in node.values]
    pattern = r"\band\b" if word == "or" else r"\bor\b"
    text = generator.text(start, spans[0][0])
    for (value_start, value_end), (next_start, _) in itertools.pairwise(spans):
        text += generator.text(value_start, value_end)
        text += re.sub(pattern, word, generator.text(value_end, next_start))
    return text + generator.text(spans[-1][0], end)


def _number(value: int) -> ast.expr:
    """What the parser makes of ``repr(value)``: a negative literal is a unary minus."""
    if value < 0:
        return ast.UnaryOp(ast.USub(), ast.Constant(-value))
    return ast.Constant(value)


def _is_text(*nodes: ast.expr) -> bool:
    return any(
        isinstance(node, ast.JoinedStr)
        or (isinstance(node, ast.Constant) and isinstance(node.value, str | bytes))
        for node in nodes
    )


def _is_log_call(call: ast.Call) -> bool:
    return isinstance(call.func, ast.Attribute) and call.func.attr in LOG_METHODS


def _is_docstring(statement: ast.stmt) -> bool:
    return (
        isinstance(statement, ast.Expr)
        and isinstance(statement.value, ast.Constant)
        and isinstance(statement.value.value, str)
    )


def mutants(path: str, source: str) -> list[Mutant]:
    """Every mutant of ``source`` (the file at ``path``, relative to the project)."""
    generator = _Generator(path, source)
    for statement in generator.tree.body:
        generator.visit(statement)
    original = source.splitlines(keepends=True)
    stem = Path(path).stem
    seen: Counter[str] = Counter()
    found: list[Mutant] = []
    ordered = sorted(generator.candidates, key=lambda found: found[1].start)
    for function, candidate in ordered:
        mutated = _checked_edit(generator, candidate)
        if mutated is None:
            continue
        changed = mutated.splitlines(keepends=True)
        diff = tuple(
            line.rstrip("\n")
            for line in difflib.unified_diff(original, changed, n=0)
            if line[:1] in "+-" and not line.startswith(("+++", "---"))
        )
        first = _first_changed_line(original, changed)
        if any(
            PRAGMA in original[line - 1] for line in range(first, _end_line(candidate.node) + 1)
        ):
            continue
        key = "|".join([path, function, candidate.operator, *diff])
        seen[key] += 1
        digest = hashlib.sha1(f"{key}|{seen[key]}".encode()).hexdigest()[:8]
        probe = (candidate.node.lineno, _end_line(candidate.node))  # type: ignore[attr-defined]
        if candidate.operator == "return" and candidate.start == candidate.end:
            probe = (probe[0], probe[0])  # an early return: only whether the function runs
        found.append(
            Mutant(
                id=f"{stem}:{function}:{candidate.operator}:{digest}",
                path=path,
                line=first,
                probe=probe,
                function=function,
                operator=candidate.operator,
                diff=diff,
                source=mutated,
            )
        )
    return found


def _checked_edit(generator: _Generator, candidate: _Candidate) -> str | None:
    """The mutated source, once the parser reads it as the intended tree; else None."""
    undo = candidate.apply()
    try:
        expected = ast.dump(generator.tree)
    finally:
        undo()
    data = generator.data
    for text in (candidate.text, f"({candidate.text})"):
        mutated = (data[: candidate.start] + text.encode() + data[candidate.end :]).decode()
        try:
            if ast.dump(ast.parse(mutated)) == expected:
                return mutated
        except SyntaxError:
            pass
    return None


def _end_line(node: ast.AST) -> int:
    return getattr(node, "end_lineno", None) or node.lineno  # type: ignore[attr-defined, no-any-return]


def _first_changed_line(original: list[str], changed: list[str]) -> int:
    for number, (old, new) in enumerate(zip(original, changed, strict=False), start=1):
        if old != new:
            return number
    return min(len(original), len(changed)) + 1


def select(found: Sequence[Mutant], only: Sequence[str], ids: Sequence[str]) -> list[Mutant]:
    """The mutants inside the functions named by ``only`` and among ``ids`` (when given)."""

    def in_scope(function: str) -> bool:
        return any(f".{name}." in f".{function}." for name in only)

    return [
        mutant
        for mutant in found
        if (not only or in_scope(mutant.function)) and (not ids or mutant.id in ids)
    ]


# --- running ------------------------------------------------------------------------------


@dataclass
class Outcome:
    mutant: Mutant
    status: str  #: killed, timeout, survived, uncovered, equivalent or error
    seconds: float = 0.0
    detail: str = ""


@dataclass
class Baseline:
    lines: dict[str, dict[int, list[int]]]  #: relative path -> line -> test indexes
    tests: list[str]
    durations: dict[str, float]


class StopRequested(Exception):
    """Ctrl-C or SIGTERM: stop starting mutants, end the running ones."""


@dataclass
class Runner:
    root: Path
    pytest_args: list[str]
    workdir: Path
    timeout: float | None
    running: set[subprocess.Popen[str]] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stopping: threading.Event = field(default_factory=threading.Event)

    def copy_project(self, name: str) -> Path:
        target = self.workdir / name
        workdir = self.workdir.resolve()

        def ignore(folder: str, names: list[str]) -> set[str]:
            # The copies never hold themselves, when the temporary folder is in the project.
            left_out = set(COPY_IGNORE(folder, names))
            return left_out | {n for n in names if (Path(folder) / n).resolve() == workdir}

        shutil.copytree(self.root, target / "project", ignore=ignore, symlinks=True)
        return target

    def environment(self, copy_dir: Path, extra: dict[str, str]) -> dict[str, str]:
        project = copy_dir / "project"
        inherited = [
            entry
            for entry in os.environ.get("PYTHONPATH", "").split(os.pathsep)
            if entry and not _inside(Path(entry), self.root)
        ]
        path = [str(project / "src"), str(TOOLS), *inherited]
        return {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(path),
            "PYTHONDONTWRITEBYTECODE": "1",  # a stale .pyc of the last mutant must never load
            **extra,
        }

    def pytest(self, copy_dir: Path, options: list[str], extra: dict[str, str],
               timeout: float | None) -> tuple[int | None, str, float]:  # fmt: skip
        """Run pytest in the copy; (exit code or None when past ``timeout``, output, seconds)."""
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
        command += ["-p", "mutate_trace", f"--basetemp={copy_dir / 'tmp'}"]
        command += [*options, *self.pytest_args]
        began = time.monotonic()
        with self.lock:
            if self.stopping.is_set():
                raise StopRequested
            process = subprocess.Popen(
                command,
                cwd=copy_dir / "project",
                env=self.environment(copy_dir, extra),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,  # its own process group: ended whole, children too
            )
            self.running.add(process)
        try:
            output, _ = process.communicate(timeout=timeout)
            code: int | None = process.returncode
        except subprocess.TimeoutExpired:
            _end(process)
            output, _ = process.communicate()
            code = None
        finally:
            with self.lock:
                self.running.discard(process)
        if self.stopping.is_set():
            raise StopRequested
        return code, output, time.monotonic() - began

    def stop(self) -> None:
        with self.lock:
            self.stopping.set()
            for process in self.running:
                _end(process)

    def baseline(self, copy_dir: Path, files: Sequence[str]) -> Baseline:
        project = copy_dir / "project"
        out = copy_dir / "trace.json"
        absolute = {str(project / path): path for path in files}
        extra = {
            "MUTATE_MODE": "trace",
            "MUTATE_FILES": json.dumps(list(absolute)),
            "MUTATE_OUT": str(out),
        }
        code, output, _ = self.pytest(copy_dir, [], extra, None)
        if code != 0 or not out.exists():
            raise SystemExit(
                f"the tests fail without any mutant (exit {code}); fix them first:\n{output}"
            )
        report = json.loads(out.read_text())
        for module in report["modules"]:
            for path in files:
                if module.endswith(path) and not _inside(Path(module), project):
                    raise SystemExit(f"the tests import {module}, not the copy of {path}")
        lines = {
            absolute[name]: {int(line): tests for line, tests in hits.items()}
            for name, hits in report["lines"].items()
            if name in absolute
        }
        return Baseline(lines, report["tests"], report["durations"])

    def run(self, mutant: Mutant, copy_dir: Path, baseline: Baseline) -> Outcome:
        hits = baseline.lines.get(mutant.path, {})
        found = {
            test
            for line in range(mutant.probe[0], mutant.probe[1] + 1)
            for test in hits.get(line, [])
        }
        if not found:
            return Outcome(mutant, "uncovered")
        if found == {-1}:  # run only at import: any test may notice
            tests = list(baseline.tests)
        else:
            tests = [baseline.tests[index] for index in found if index >= 0]
        tests.sort(key=lambda nodeid: baseline.durations.get(nodeid, 0.0))
        chosen = copy_dir / "select.json"
        chosen.write_text(json.dumps(tests))
        limit = self.timeout
        if limit is None:
            limit = 30.0 + 3 * sum(baseline.durations.get(test, 0.0) for test in tests)
        target = copy_dir / "project" / mutant.path
        original = target.read_bytes()
        target.write_text(mutant.source)
        try:
            extra = {"MUTATE_MODE": "select", "MUTATE_SELECT": str(chosen)}
            code, output, seconds = self.pytest(copy_dir, ["-x"], extra, limit)
        finally:
            target.write_bytes(original)
        if code is None or HANG.search(output):
            return Outcome(mutant, "timeout", seconds)
        if code == 0:
            return Outcome(mutant, "survived", seconds)
        if code in (1, 2, 3):  # failed, interrupted (e.g. an import error), internal error
            return Outcome(mutant, "killed", seconds)
        return Outcome(mutant, "error", seconds, output[-2000:])


def _end(process: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True


def run_all(
    runner: Runner, todo: list[Mutant], files: Sequence[str], jobs: int
) -> Iterator[Outcome]:
    """Outcomes as they come, from ``jobs`` copies of the project working in parallel."""
    copies = [runner.copy_project(f"job{index}") for index in range(max(1, min(jobs, len(todo))))]
    baseline = runner.baseline(copies[0], files)
    queue = list(reversed(todo))
    queue_lock = threading.Lock()

    def work(copy_dir: Path) -> list[Outcome]:
        done: list[Outcome] = []
        while not runner.stopping.is_set():
            with queue_lock:
                if not queue:
                    return done
                mutant = queue.pop()
            outcome = runner.run(mutant, copy_dir, baseline)
            _progress(outcome, len(todo) - len(queue), len(todo))
            done.append(outcome)
        return done

    with ThreadPoolExecutor(len(copies)) as pool:
        futures = [pool.submit(work, copy_dir) for copy_dir in copies]
        try:
            for future in futures:
                yield from future.result()
        except BaseException:
            runner.stop()  # before the pool waits for its workers, whose runs it ends
            raise


def _progress(outcome: Outcome, number: int, total: int) -> None:
    mutant = outcome.mutant
    where = f"{mutant.path}:{mutant.line}"
    print(
        f"[{number}/{total}] {outcome.status:<9} {where}  {mutant.id}", file=sys.stderr, flush=True
    )


# --- reporting ----------------------------------------------------------------------------

COLUMNS = ("killed", "timeout", "survived", "uncovered", "equivalent", "error")


def score(outcomes: Sequence[Outcome]) -> float | None:
    counts = Counter(outcome.status for outcome in outcomes)
    denominator = len(outcomes) - counts["equivalent"]
    if denominator == 0:
        return None
    return 100.0 * (counts["killed"] + counts["timeout"]) / denominator


def report(outcomes: Sequence[Outcome], files: Sequence[str]) -> str:
    by_file = {path: [o for o in outcomes if o.mutant.path == path] for path in files}
    width = max(len("module"), *(len(path) for path in files))
    lines = [f"{'module':<{width}}  mutants  " + "  ".join(COLUMNS) + "   score"]
    for path, done in by_file.items():
        counts = Counter(outcome.status for outcome in done)
        cells = "  ".join(f"{counts[column]:>{len(column)}}" for column in COLUMNS)
        value = score(done)
        shown = "-" if value is None else f"{value:.1f}%"
        lines.append(f"{path:<{width}}  {len(done):>7}  {cells}  {shown:>6}")
    for status, title in (
        (
            "survived",
            "Survivors: argue each equivalent (--equivalent) or write a test that kills it",
        ),
        ("uncovered", "Uncovered: no test runs these lines"),
        ("error", "Errors: pytest could not run (usage error, or no test collected)"),
    ):
        chosen = [outcome for outcome in outcomes if outcome.status == status]
        if chosen:
            lines += ["", f"{title} ({len(chosen)}):"]
            for outcome in sorted(chosen, key=lambda o: (o.mutant.path, o.mutant.line)):
                lines.append(_describe(outcome.mutant))
                if outcome.detail:
                    lines.append("    " + outcome.detail.strip().replace("\n", "\n    "))
    return "\n".join(lines)


def _describe(mutant: Mutant) -> str:
    head = f"{mutant.path}:{mutant.line}  {mutant.id}"
    return "\n".join([head, *(f"    {line}" for line in mutant.diff)])


def read_equivalent(path: Path) -> set[str]:
    ids: set[str] = set()
    for line in path.read_text().splitlines():
        text = line.split("#", 1)[0].strip()
        if text:
            ids.add(text.split()[0])
    return ids


# --- command line -------------------------------------------------------------------------


def parse(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    args = list(argv)
    pytest_args: list[str] = []
    if "--" in args:
        cut = args.index("--")
        args, pytest_args = args[:cut], args[cut + 1 :]
    parser = argparse.ArgumentParser(
        prog="python tools/mutate.py",
        description="Run mutants of SOURCE files against the tests given after --.",
        epilog="example: python tools/mutate.py src/eventcore/projection/follower.py "
        "-- tests/projection/test_follower.py",
    )
    parser.add_argument("sources", nargs="+", type=Path, metavar="SOURCE")
    parser.add_argument(
        "-j", "--jobs", type=int, default=2, help="mutants run in parallel (default 2)"
    )
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NAME",
        help="only mutants inside this function, method or class (repeatable)",
    )
    parser.add_argument(
        "--id",
        action="append",
        default=[],
        dest="ids",
        metavar="ID",
        help="only this mutant (repeatable)",
    )
    parser.add_argument("--list", action="store_true", help="print the mutants, run nothing")
    parser.add_argument(
        "--equivalent",
        type=Path,
        metavar="FILE",
        help="ids of mutants judged equivalent, one a line (# comments)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        help="a mutant's run past this is a timeout (default: 30 s + 3x its tests' "
        "time in the unchanged run)",
    )
    parser.add_argument(
        "--min-score", type=float, metavar="PERCENT", help="exit 1 if a module scores below this"
    )
    options = parser.parse_args(args)
    if not options.list and not pytest_args:
        parser.error("give the tests to run after --")
    return options, pytest_args


def project_root(source: Path) -> Path:
    for folder in source.resolve().parents:
        if (folder / "pyproject.toml").exists():
            return folder
    raise SystemExit(f"no pyproject.toml above {source}")


def main(argv: Sequence[str] | None = None) -> int:
    options, pytest_args = parse(sys.argv[1:] if argv is None else argv)
    root = project_root(options.sources[0])
    files = []
    for source in options.sources:
        if not _inside(source, root):
            raise SystemExit(f"{source} is not inside {root}")
        files.append(source.resolve().relative_to(root).as_posix())
    found = [m for path in files for m in mutants(path, (root / path).read_text())]
    chosen = select(found, options.only, options.ids)
    if options.list:
        for mutant in chosen:
            print(_describe(mutant))
        print(f"{len(chosen)} mutants", file=sys.stderr)
        return 0
    equivalent = read_equivalent(options.equivalent) if options.equivalent else set()
    outcomes = [Outcome(m, "equivalent") for m in chosen if m.id in equivalent]
    todo = [m for m in chosen if m.id not in equivalent]
    stale = equivalent - {m.id for m in found}
    if stale:
        print(f"not a mutant of these files (stale?): {', '.join(sorted(stale))}", file=sys.stderr)

    def interrupted(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupted)
    with tempfile.TemporaryDirectory(prefix="mutate-") as workdir:
        runner = Runner(root, pytest_args, Path(workdir), options.timeout)
        try:
            if todo:
                outcomes += run_all(runner, todo, files, options.jobs)
        except (KeyboardInterrupt, StopRequested):
            runner.stop()
            print("interrupted: the working tree was never changed; the copies are removed",
                  file=sys.stderr)  # fmt: skip
            return 130
        finally:
            runner.stop()
            signal.signal(signal.SIGTERM, previous)
    print(report(outcomes, files))
    if options.min_score is not None:
        scores = [score([o for o in outcomes if o.mutant.path == path]) for path in files]
        if any(value is not None and value < options.min_score for value in scores):
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
