"""``RegistryResolver``: the service client's resolver (``eventcore.resilience``),
answered by the registry: ``ServiceClient(RegistryResolver(registry))`` calls
``http://payments/...`` on the live instances of ``payments``, round robin, failing
over to the others when one refuses the connection.

The client asks before every call, so answers are kept ``refresh`` seconds per
service (one lookup per second, not one per call). While the registry is unreachable
the last answer is used again: the instances it named are more likely alive than
none, and a dead one only costs a failover.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Final

from eventcore.errors import InvalidInput, RegistryError
from eventcore.registry.registry import Registry

__all__ = ["DEFAULT_REFRESH", "RegistryResolver"]

#: Seconds an answer is used again before the registry is asked anew.
DEFAULT_REFRESH: Final = 1.0


class RegistryResolver:
    """``async (service) -> base URLs`` of its live instances, from ``registry``."""

    def __init__(
        self,
        registry: Registry,
        *,
        refresh: float = DEFAULT_REFRESH,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if isinstance(refresh, bool) or not isinstance(refresh, int | float) or not refresh >= 0:
            raise InvalidInput(f"refresh must be a number of seconds >= 0, got {refresh!r}")
        self._registry = registry
        self._refresh = float(refresh)
        self._clock = clock
        self._answers: dict[str, tuple[float, tuple[str, ...]]] = {}

    def __repr__(self) -> str:
        return f"RegistryResolver({self._registry.backend} registry, refresh={self._refresh:g})"

    async def __call__(self, service: str) -> Sequence[str]:
        now = self._clock()
        kept = self._answers.get(service)
        if kept is not None and now - kept[0] < self._refresh:
            return kept[1]
        try:
            instances = await self._registry.discover(service)
        except RegistryError:
            if kept is None:
                raise
            return kept[1]
        addresses = tuple(instance.address for instance in instances)
        self._answers[service] = (now, addresses)
        return addresses
