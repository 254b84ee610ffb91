"""Resolvers: from a service's name to the base URLs of its live instances.

A resolver is any ``async (service) -> Sequence[str]``. The service registry plugs in
here; ``StaticResolver`` is a fixed table, for tests and for configurations that list
their peers. An empty answer means the service has no live instance.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence

from eventcore.resilience.address import check_base_url, check_service

__all__ = ["Resolver", "StaticResolver"]

Resolver = Callable[[str], Awaitable[Sequence[str]]]


class StaticResolver:
    """Instances from a fixed table: ``StaticResolver({"payments": ["http://127.0.0.1:8001"]})``.

    Every name and address is checked here, when the table is made (``InvalidName``,
    ``InvalidUrl``). A service the table does not name has no instances.
    """

    def __init__(self, instances: Mapping[str, Sequence[str]]) -> None:
        table: dict[str, tuple[str, ...]] = {}
        for service, addresses in instances.items():
            if isinstance(addresses, str):
                addresses = [addresses]
            table[check_service(service)] = tuple(check_base_url(a) for a in addresses)
        self._instances = table

    def __repr__(self) -> str:
        return f"StaticResolver({ {s: list(a) for s, a in self._instances.items()} })"

    async def __call__(self, service: str) -> Sequence[str]:
        return self._instances.get(service, ())
