"""Lower layers never import higher ones (docs/architecture.md, "Layers")."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "eventcore"

# Layers from the bottom up; a module's layer is found by the longest matching prefix.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("values", ("eventcore._version", "eventcore.types", "eventcore.errors")),
    ("events", ("eventcore.events",)),
    ("store", ("eventcore.store",)),
    (
        "commands",
        (
            "eventcore.command",
            "eventcore.retry",
            "eventcore.statecache",
            "eventcore.pipeline",
            "eventcore.executor",
        ),
    ),
    ("read side", ("eventcore.projection",)),
    ("messaging", ("eventcore.messaging",)),
    ("coordination", ("eventcore.resilience", "eventcore.saga")),
    ("runtime", ("eventcore.cli", "eventcore.demo")),
]
RANK = {name: rank for rank, (name, _) in enumerate(LAYERS)}


def layer_of(module: str) -> str | None:
    best: tuple[int, str] | None = None
    for name, prefixes in LAYERS:
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and (
                best is None or len(prefix) > best[0]
            ):
                best = (len(prefix), name)
    return best[1] if best else None


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return {name for name in found if name.startswith("eventcore.")}


SOURCES = [
    path for path in sorted(PACKAGE.rglob("*.py")) if module_name(path) != "eventcore"
]


@pytest.mark.parametrize("path", SOURCES, ids=module_name)
def test_module_imports_only_its_own_or_lower_layers(path: Path) -> None:
    module = module_name(path)
    layer = layer_of(module)
    assert layer is not None, f"{module} belongs to no layer: add it to LAYERS and the docs"
    upward = [
        imported
        for imported in imported_modules(path)
        if (target := layer_of(imported)) is not None and RANK[target] > RANK[layer]
    ]
    assert not upward, f"{module} ({layer}) imports higher layers: {upward}"
