"""The import rules of docs/architecture.md ("Layers"): lower layers never import higher
ones, no module imports another package's private module, and no import cycle."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "eventcore"

# Layers from the bottom up; a module's layer is found by the longest matching prefix.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    (
        "values",
        (
            "eventcore._version",
            "eventcore._checks",
            "eventcore._closing",
            "eventcore.redaction",
            "eventcore.types",
            "eventcore.errors",
        ),
    ),
    ("events", ("eventcore.events",)),
    ("instrumentation", ("eventcore.instrumentation",)),
    (
        "plumbing",
        (
            "eventcore._schema_version",
            "eventcore._sqlite",
            "eventcore._nats",
            "eventcore.leases",
            "eventcore.lifecycle",
            # Single-leader workers: a lease and a worker, so any layer above may use it.
            "eventcore.singleton",
        ),
    ),
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
    ("coordination", ("eventcore.resilience", "eventcore.saga", "eventcore.registry")),
    ("federation", ("eventcore.federation",)),
    # Tracing, metrics and logs on the instrumentation seam: nothing below knows of them.
    ("observability", ("eventcore.observability",)),
    # Contract suites and test helpers: may use every layer below the runtime.
    ("testing", ("eventcore.testing",)),
    ("runtime", ("eventcore.service", "eventcore.web", "eventcore.cli", "eventcore.demo")),
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


def resolved_imports(path: Path) -> set[str]:
    """Every ``eventcore`` module ``path`` imports, wherever the import stands (module level,
    in a function, under ``TYPE_CHECKING``), relative ones included: ``from X import n``
    names the module ``X.n`` when that is a module, else ``X`` itself."""
    module = module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(_known(alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                origin = ".".join([*base, *([node.module] if node.module else [])])
            else:
                origin = node.module or ""
            for alias in node.names:
                submodule = f"{origin}.{alias.name}"
                found.add(submodule if submodule in MODULES else _known(origin))
    return {name for name in found if name == "eventcore" or name.startswith("eventcore.")}


def _known(name: str) -> str:
    """The module ``name`` is, or the nearest package holding it (``a.b.c`` of a missing
    ``c`` is an attribute of ``a.b``)."""
    while name not in MODULES and "." in name:
        name = name.rpartition(".")[0]
    return name


def private_owner(module: str) -> str | None:
    """The package whose modules alone may import ``module``: the one holding its first
    private segment (``eventcore.store._x`` → ``eventcore.store``); None when public."""
    parts = module.split(".")
    for index, part in enumerate(parts):
        if part.startswith("_") and not part.startswith("__"):
            return ".".join(parts[:index])
    return None


def within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` as a path that ends where it starts, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (cycle := visit(target)) is not None:
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)) is not None:
            return cycle
    return None


ALL_SOURCES = sorted(PACKAGE.rglob("*.py"))
MODULES = {module_name(path) for path in ALL_SOURCES}
SOURCES = [path for path in ALL_SOURCES if module_name(path) != "eventcore"]


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


@pytest.mark.parametrize("path", ALL_SOURCES, ids=module_name)
def test_module_imports_no_private_module_of_another_package(path: Path) -> None:
    module = module_name(path)
    foreign = sorted(
        imported
        for imported in resolved_imports(path)
        if (owner := private_owner(imported)) is not None and not within(module, owner)
    )
    assert not foreign, f"{module} imports private modules of other packages: {foreign}"


#: Third-party packages only one eventcore package may import: the seam keeps the rest
#: of the library free of them (docs/architecture.md, "Observability").
CONFINED = {
    "opentelemetry": "eventcore.observability",
    "prometheus_client": "eventcore.observability",
}


def third_party_imports(path: Path) -> set[str]:
    """The top-level names of every non-eventcore module ``path`` imports, wherever the
    import stands."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name.partition(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.partition(".")[0])
    return found - {"eventcore"}


@pytest.mark.parametrize("path", ALL_SOURCES, ids=module_name)
def test_only_the_observability_package_imports_opentelemetry_or_prometheus(
    path: Path,
) -> None:
    module = module_name(path)
    stray = sorted(
        name
        for name in third_party_imports(path)
        if name in CONFINED and not within(module, CONFINED[name])
    )
    assert not stray, f"{module} imports {stray}: only {sorted(set(CONFINED.values()))} may"


def test_no_import_cycle() -> None:
    graph = {
        module_name(path): resolved_imports(path) - {module_name(path)} for path in ALL_SOURCES
    }

    cycle = find_cycle(graph)

    assert cycle is None, "import cycle: " + " -> ".join(cycle or ())


@pytest.mark.parametrize(
    ("graph", "expected"),
    [
        ({"a": {"b"}, "b": {"c"}, "c": set()}, None),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, ["a", "b", "c", "a"]),
        ({"a": {"b"}, "b": {"b"}}, ["b", "b"]),
        ({"x": {"a"}, "a": {"b"}, "b": {"a"}}, ["a", "b", "a"]),
    ],
    ids=["acyclic", "three-step", "self", "reached-from-outside"],
)
def test_find_cycle_reports_the_cycle_path(
    graph: dict[str, set[str]], expected: list[str] | None
) -> None:
    assert find_cycle(graph) == expected


@pytest.mark.parametrize(
    ("module", "owner"),
    [
        ("eventcore.store.protocol", None),
        ("eventcore.store._head_signal", "eventcore.store"),
        ("eventcore.store.sqlite._read", "eventcore.store.sqlite"),
        ("eventcore._sqlite.thread", "eventcore"),
        ("eventcore.__init__", None),
    ],
)
def test_private_owner_is_the_package_holding_the_first_private_segment(
    module: str, owner: str | None
) -> None:
    assert private_owner(module) == owner
