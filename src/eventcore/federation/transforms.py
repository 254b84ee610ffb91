"""The transformations a rule applies, in order, to its copy of an event.

Each is a small frozen value built (and checked) when the configuration loads, with an
``apply(draft)`` that edits the ``Draft`` — the routed copy being made — and raises
``StepFailed`` with a reason when this event cannot be transformed. The router turns
that into a ``TransformFailed`` for this rule alone.

A user function (``op = "function"``) receives the same ``Draft`` and edits it in
place; whatever it raises fails the event the same way, with the error as the reason.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from eventcore.federation.fields import FieldPath, StepFailed
from eventcore.federation.pii import Hasher, Tokenizer, mask_text
from eventcore.messaging.envelope import DistributedEvent

__all__ = [
    "Draft",
    "Drop",
    "Function",
    "Hash",
    "Keep",
    "Mask",
    "Redact",
    "RenameField",
    "RenameType",
    "SetSource",
    "Step",
    "StepFailed",
    "Tokenize",
    "UserFunction",
]


@dataclass
class Draft:
    """The routed copy while a rule's transformations work on it: the attributes they
    may change, and ``data``, the payload decoded from JSON (this rule's own copy: edit
    it freely; ``None`` when no step of the rule reads the payload, which then passes
    byte for byte). ``original`` is the event as it arrived, to read from."""

    type: str
    source: str
    data: Any
    original: DistributedEvent


#: A user function: edits the draft in place (its return value is ignored).
UserFunction = Callable[[Draft], object]


class Step(Protocol):
    """One transformation."""

    #: Whether it reads or writes ``data`` (the payload is decoded only for those).
    @property
    def reads_payload(self) -> bool: ...

    def apply(self, draft: Draft) -> None: ...

    def describe(self) -> str:
        """A few words for messages and ``federate explain``."""
        ...


@dataclass(frozen=True)
class RenameType:
    to: str
    reads_payload = False

    def apply(self, draft: Draft) -> None:
        draft.type = self.to

    def describe(self) -> str:
        return f"rename-type to {self.to!r}"


@dataclass(frozen=True)
class SetSource:
    to: str
    reads_payload = False

    def apply(self, draft: Draft) -> None:
        draft.source = self.to

    def describe(self) -> str:
        return f"set-source to {self.to!r}"


def _names(paths: tuple[FieldPath, ...]) -> str:
    return ", ".join(path.text for path in paths)


@dataclass(frozen=True)
class Keep:
    """Keep only these fields (and what is inside them); everything else goes."""

    fields: tuple[FieldPath, ...]
    reads_payload = True

    def apply(self, draft: Draft) -> None:
        kept: dict[str, Any] = {}
        for path in self.fields:
            found, value = path.get(draft.data)
            if found:
                path.put(kept, value)
        draft.data = kept

    def describe(self) -> str:
        return f"keep {_names(self.fields)}"


@dataclass(frozen=True)
class Drop:
    fields: tuple[FieldPath, ...]
    reads_payload = True

    def apply(self, draft: Draft) -> None:
        for path in self.fields:
            path.remove(draft.data)

    def describe(self) -> str:
        return f"drop {_names(self.fields)}"


@dataclass(frozen=True)
class RenameField:
    source: FieldPath
    target: FieldPath
    reads_payload = True

    def apply(self, draft: Draft) -> None:
        found, value = self.source.remove(draft.data)
        if found:
            self.target.put(draft.data, value)

    def describe(self) -> str:
        return f"rename {self.source.text} to {self.target.text}"


@dataclass(frozen=True)
class Hash:
    fields: tuple[FieldPath, ...]
    key: bytes
    #: The environment variable the key came from, to name it (never the key).
    key_env: str
    reads_payload = True
    _hasher: Hasher = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_hasher", Hasher(self.key))

    def apply(self, draft: Draft) -> None:
        for path in self.fields:
            path.update(draft.data, self._hasher)

    def describe(self) -> str:
        return f"hash {_names(self.fields)} (key from ${self.key_env})"

    def __repr__(self) -> str:  # never the key itself
        return f"Hash(fields={_names(self.fields)!r}, key_env={self.key_env!r})"


@dataclass(frozen=True)
class Redact:
    fields: tuple[FieldPath, ...]
    marker: str = "[redacted]"
    reads_payload = True

    def apply(self, draft: Draft) -> None:
        for path in self.fields:
            path.update(draft.data, lambda _: self.marker)

    def describe(self) -> str:
        return f"redact {_names(self.fields)} as {self.marker!r}"


@dataclass(frozen=True)
class Mask:
    fields: tuple[FieldPath, ...]
    #: The most characters left in view (fewer when the value is short).
    keep: int = 4
    char: str = "*"
    reads_payload = True

    def apply(self, draft: Draft) -> None:
        for path in self.fields:
            path.update(draft.data, self._masked)

    def _masked(self, value: Any) -> str:
        # A number (a card number kept as one) is masked as its digits.
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            raise StepFailed(f"mask takes text or a number, got {type(value).__name__}")
        return mask_text(value, self.keep, self.char)

    def describe(self) -> str:
        return f"mask {_names(self.fields)} keeping the last {self.keep}"


@dataclass(frozen=True)
class Tokenize:
    fields: tuple[FieldPath, ...]
    tokenizer: Tokenizer
    key_env: str
    reads_payload = True

    def apply(self, draft: Draft) -> None:
        for path in self.fields:
            path.update(draft.data, self.tokenizer.tokenize)

    def describe(self) -> str:
        return f"tokenize {_names(self.fields)} (key from ${self.key_env})"

    def __repr__(self) -> str:
        return f"Tokenize(fields={_names(self.fields)!r}, key_env={self.key_env!r})"


@dataclass(frozen=True)
class Function:
    reference: str
    function: UserFunction
    reads_payload = True

    def apply(self, draft: Draft) -> None:
        self.function(draft)

    def describe(self) -> str:
        return f"function {self.reference}"
