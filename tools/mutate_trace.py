"""pytest plugin of tools/mutate.py, loaded into the pytest runs it starts (``-p mutate_trace``).

``MUTATE_MODE=trace``: record which test runs which line of the files under mutation
(``MUTATE_FILES``, a JSON list of absolute paths), each test's duration and outcome,
and the file every imported module came from; write it all as JSON to ``MUTATE_OUT``.

``MUTATE_MODE=select``: run only the tests named in the JSON list in ``MUTATE_SELECT``,
in that order (the fastest first, so that ``-x`` stops early on a killed mutant).
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Generator
from types import FrameType
from typing import Any

import pytest

MODE = os.environ.get("MUTATE_MODE", "")
#: Line events seen outside any test (imports, collection) count under this index.
OUTSIDE_TESTS = -1

_files: frozenset[str] = frozenset(json.loads(os.environ.get("MUTATE_FILES", "[]")))
_lines: dict[str, dict[int, set[int]]] = {}
_tests: list[str] = []
_durations: dict[str, float] = {}
_failed: list[str] = []
_current = OUTSIDE_TESTS


def _record(frame: FrameType) -> None:
    hits = _lines.setdefault(frame.f_code.co_filename, {})
    hits.setdefault(frame.f_lineno, set()).add(_current)


def _trace_lines(frame: FrameType, event: str, arg: Any) -> Any:
    if event == "line":
        _record(frame)
    return _trace_lines


def _trace_calls(frame: FrameType, event: str, arg: Any) -> Any:
    # Only frames of the files under mutation get a line tracer: the rest of the
    # process pays one call per function call, not one per line.
    if frame.f_code.co_filename in _files:
        _record(frame)
        return _trace_lines
    return None


def pytest_configure(config: pytest.Config) -> None:
    if MODE == "trace":
        sys.settrace(_trace_calls)
        threading.settrace(_trace_calls)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None, object, object]:
    global _current
    _current = len(_tests)
    _tests.append(item.nodeid)
    try:
        return (yield)
    finally:
        _current = OUTSIDE_TESTS


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _durations[report.nodeid] = _durations.get(report.nodeid, 0.0) + report.duration
    if report.failed and report.nodeid not in _failed:
        _failed.append(report.nodeid)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if MODE != "select":
        return
    with open(os.environ["MUTATE_SELECT"], encoding="utf-8") as file:
        wanted: list[str] = json.load(file)
    by_id = {item.nodeid: item for item in items}
    chosen = [by_id[nodeid] for nodeid in wanted if nodeid in by_id]
    keep = set(map(id, chosen))
    config.hook.pytest_deselected(items=[item for item in items if id(item) not in keep])
    items[:] = chosen


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if MODE != "trace":
        return
    sys.settrace(None)
    threading.settrace(None)
    modules = [
        path
        for module in list(sys.modules.values())
        if isinstance(path := getattr(module, "__file__", None), str)
    ]
    report = {
        "lines": {
            path: {str(line): sorted(tests) for line, tests in hits.items()}
            for path, hits in _lines.items()
        },
        "tests": _tests,
        "durations": _durations,
        "failed": _failed,
        "modules": modules,
    }
    with open(os.environ["MUTATE_OUT"], "w", encoding="utf-8") as file:
        json.dump(report, file)
