"""An optional cache of folded command state, so a hot stream is not refolded from 1.

Only safe when states are values (ints, tuples, frozen structs…): the cached state is
handed to ``apply`` again, so a state mutated in place would be corrupted.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import msgspec

from eventcore.command import Command
from eventcore.types import StreamId

__all__ = ["CachedState", "StateCache"]


class CachedState(msgspec.Struct, frozen=True):
    """A state, the version of every stream it was folded from, and the position of the
    last event folded (0 when none was)."""

    state: Any
    versions: dict[StreamId, int]
    last_position: int = 0


class StateCache:
    """Least-recently-used states, keyed by command type and declared streams."""

    def __init__(self, max_entries: int) -> None:
        self._max_entries = max_entries
        self._entries: OrderedDict[tuple[type[Any], tuple[StreamId, ...]], CachedState] = (
            OrderedDict()
        )

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, command: Command[Any], streams: list[StreamId]) -> CachedState | None:
        key = (type(command), tuple(streams))
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
        return entry

    def put(self, command: Command[Any], streams: list[StreamId], entry: CachedState) -> None:
        key = (type(command), tuple(streams))
        self._entries[key] = entry
        self._entries.move_to_end(key)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    def forget(self, command: Command[Any], streams: list[StreamId]) -> None:
        self._entries.pop((type(command), tuple(streams)), None)
