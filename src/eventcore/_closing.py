"""``Closing``: ``async with`` for a class whose ``aclose`` releases what it holds.

A private module of the root package, so that any package may build on it: the store
and bus fronts, the SQL projection targets, the service client and the test wrappers
all close the same way on leaving an ``async with`` block."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Self

__all__ = ["Closing"]


class Closing(ABC):
    """``async with x`` gives ``x`` and awaits ``x.aclose()`` on leaving, however the
    block ends."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    @abstractmethod
    async def aclose(self) -> None: ...
