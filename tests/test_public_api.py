"""The public surface: ``eventcore.__all__`` is the deliberate list, and nothing drifts from it.

As httpx tests its exported members: a name added to the package without being
listed (or listed without existing) fails here.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from types import ModuleType

import pytest

import eventcore

# Concept modules users may import from directly; each one's ``__all__`` must hold.
MODULES = [
    "eventcore.types",
    "eventcore.errors",
    "eventcore.events",
    "eventcore.lifecycle",
    "eventcore.singleton",
    "eventcore.command",
    "eventcore.instrumentation",
    "eventcore.store",
    "eventcore.store.protocol",
    "eventcore.store.payload",
    "eventcore.store.request",
    "eventcore.store.url",
    "eventcore.store.memory",
    "eventcore.messaging",
    "eventcore.messaging.bus",
    "eventcore.messaging.envelope",
    "eventcore.messaging.relay",
    "eventcore.messaging.subscriber",
    "eventcore.messaging.topics",
    "eventcore.messaging.url",
    "eventcore.messaging.memory",
    "eventcore.saga",
    "eventcore.registry",
    "eventcore.registry.url",
    "eventcore.federation",
    "eventcore.federation.config",
    "eventcore.federation.matcher",
    "eventcore.federation.routing",
    "eventcore.federation.transforms",
    "eventcore.testing",
    "eventcore.testing.store",
    "eventcore.testing.bus",
    "eventcore.testing.target",
    "eventcore.testing.faults",
    "eventcore.testing.idle",
    "eventcore.testing.registry",
]


def test_every_name_in_all_exists() -> None:
    missing = [name for name in eventcore.__all__ if not hasattr(eventcore, name)]

    assert missing == []


def test_public_names_of_the_package_are_exactly_all() -> None:
    # Submodules become attributes once imported; they are reached by import, not exported.
    public = {
        name
        for name, value in vars(eventcore).items()
        if not name.startswith("_") and not isinstance(value, ModuleType)
    }

    assert public == {name for name in eventcore.__all__ if not name.startswith("_")}


def test_all_has_no_duplicates_and_is_sorted() -> None:
    assert len(set(eventcore.__all__)) == len(eventcore.__all__)
    assert eventcore.__all__ == sorted(eventcore.__all__)


def test_star_import_gives_exactly_all() -> None:
    namespace: dict[str, object] = {}

    exec("from eventcore import *", namespace)

    assert set(namespace) - {"__builtins__"} == set(eventcore.__all__)


def test_version_is_a_string() -> None:
    assert isinstance(eventcore.__version__, str)
    assert eventcore.__version__


@pytest.mark.parametrize("module_name", MODULES)
def test_every_name_in_a_module_all_exists(module_name: str) -> None:
    module = importlib.import_module(module_name)

    assert [name for name in module.__all__ if not hasattr(module, name)] == []


def test_exported_errors_share_one_root() -> None:
    errors = [
        value
        for value in (getattr(eventcore, name) for name in eventcore.__all__)
        if isinstance(value, type) and issubclass(value, Exception)
    ]

    assert errors
    assert all(issubclass(error, eventcore.EventcoreError) for error in errors)


def test_the_fault_wrappers_and_services_need_no_pytest() -> None:
    # eventcore.testing's contract classes need pytest (the ``testing`` extra); what a
    # program may use outside a test run must not pull it in.
    code = (
        "import sys, eventcore.testing as t; t.FaultyStore; t.FaultyBus; t.Services;"
        " print('pytest' in sys.modules, 'hypothesis' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == ["False", "False"]
