"""Dotted paths into a JSON payload, and the edits a rule makes through them.

``customer.address.city`` names the key ``city`` of the object under ``address`` of the
object under ``customer``. A path that is not there (a key missing on the way) is left
alone: nothing to keep, drop or protect. A path that runs into something that is not
an object (a list, a string) fails the event instead: the rule cannot tell where the
named field would be, and a protected field must never pass because its path was
unclear. A key that itself contains a dot cannot be named.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from eventcore.errors import InvalidInput

__all__ = ["FieldPath", "StepFailed"]


class StepFailed(Exception):
    """A transformation could not be applied to this event; the message is the reason."""


def _kind(value: object) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "text"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if value is None:
        return "null"
    return type(value).__name__


class FieldPath:
    """A checked dotted path: no empty segment, no white space around it."""

    __slots__ = ("keys", "text")

    def __init__(self, text: str) -> None:
        if not isinstance(text, str):
            raise InvalidInput(f"expected a dotted field path, got {type(text).__name__}")
        if not text or text != text.strip():
            raise InvalidInput("a field path must be non-empty, without surrounding white space")
        keys = tuple(text.split("."))
        if any(not key for key in keys):
            raise InvalidInput(f"field path {text!r} has an empty segment")
        self.text = text
        self.keys = keys

    def __repr__(self) -> str:
        return f"FieldPath({self.text!r})"

    def _parent(self, data: Any, *, create: bool) -> dict[str, Any] | None:
        """The object holding the last key; None if a key on the way is missing (and
        ``create`` is false)."""
        if not isinstance(data, dict):
            raise StepFailed(f"the payload is {_kind(data)}, not an object")
        node: dict[str, Any] = data
        for depth, key in enumerate(self.keys[:-1]):
            child = node.get(key)
            if child is None and key not in node:
                if not create:
                    return None
                child = node[key] = {}
            if not isinstance(child, dict):
                walked = ".".join(self.keys[: depth + 1])
                raise StepFailed(f"{walked!r} is {_kind(child)}, not an object")
            node = child
        return node

    def get(self, data: Any) -> tuple[bool, Any]:
        """(True, value), or (False, None) if the path is not there."""
        parent = self._parent(data, create=False)
        if parent is None or self.keys[-1] not in parent:
            return False, None
        return True, parent[self.keys[-1]]

    def overlaps(self, other: FieldPath) -> bool:
        """One names the other or a field inside it."""
        shorter = min(len(self.keys), len(other.keys))
        return self.keys[:shorter] == other.keys[:shorter]

    def update(self, data: Any, change: Callable[[Any], Any]) -> None:
        """Replace the value at this path by ``change(value)``, if there is one."""
        parent = self._parent(data, create=False)
        if parent is not None and self.keys[-1] in parent:
            parent[self.keys[-1]] = change(parent[self.keys[-1]])

    def remove(self, data: Any) -> tuple[bool, Any]:
        """Take the value out: (True, value), or (False, None) if it was not there."""
        parent = self._parent(data, create=False)
        if parent is None or self.keys[-1] not in parent:
            return False, None
        return True, parent.pop(self.keys[-1])

    def put(self, data: Any, value: Any) -> None:
        """Set the value, making the objects on the way; an existing value is a failure
        (a rename onto a field that is there would lose one of the two)."""
        parent = self._parent(data, create=True)
        if parent is None:  # not reached: create=True makes every object on the way
            raise StepFailed(f"{self.text!r} cannot be made")
        if self.keys[-1] in parent:
            raise StepFailed(f"{self.text!r} is already there")
        parent[self.keys[-1]] = value
