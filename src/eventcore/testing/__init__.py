"""What a project needs to test against eventcore: the contracts a backend must keep,
seeded fault-injecting wrappers, and helpers that wait until services are idle.

* :class:`StoreContract`, :class:`BusContract`, :class:`TargetContract`,
  :class:`RegistryContract` — pytest test classes holding every guarantee of an event
  store, a message bus, a projection target and a service registry; a backend
  subclasses one and provides one fixture (see ``docs/guides/testing-your-backend.md``).
* :class:`FaultyStore`, :class:`FaultyBus` — wrappers that, from a seed, fail calls with
  the typed outage errors, delay them, deliver twice and drop connections.
* :class:`Services`, :func:`until_idle` — run relays and subscribers together and wait
  until every relay has caught up and every delivery settled, instead of polling.

The contract classes need pytest, pytest-asyncio and hypothesis (``pip install
eventcore[testing]``); they are imported only when first named, so the fault wrappers and
:class:`Services` work without them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from eventcore.testing.bus import BusContract
    from eventcore.testing.faults import FaultPlan, FaultyBus, FaultyStore
    from eventcore.testing.idle import Services, until_idle
    from eventcore.testing.registry import RegistryContract
    from eventcore.testing.store import StoreContract
    from eventcore.testing.target import TargetContract

__all__ = [
    "BusContract",
    "FaultPlan",
    "FaultyBus",
    "FaultyStore",
    "RegistryContract",
    "Services",
    "StoreContract",
    "TargetContract",
    "until_idle",
]

#: Where each public name lives; a name is imported when first asked for, so naming a
#: fault wrapper does not import pytest.
_HOMES = {
    "BusContract": "eventcore.testing.bus",
    "FaultPlan": "eventcore.testing.faults",
    "FaultyBus": "eventcore.testing.faults",
    "FaultyStore": "eventcore.testing.faults",
    "RegistryContract": "eventcore.testing.registry",
    "Services": "eventcore.testing.idle",
    "StoreContract": "eventcore.testing.store",
    "TargetContract": "eventcore.testing.target",
    "until_idle": "eventcore.testing.idle",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
