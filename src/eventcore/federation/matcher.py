"""Event-type patterns: which CloudEvents ``type`` values a rule takes.

A type is read as segments separated by dots (``orders.line.added``); a name without
dots (``UserRegistered``) is one segment. In a pattern:

* ``*`` matches any run of characters other than a dot, empty included: alone it is
  one whole segment (``user.*`` takes ``user.created``, not ``user.a.b``); inside a
  segment it is a plain glob (``User*`` takes ``UserRegistered`` and ``User``);
* ``**``, a segment on its own, matches any number of whole segments, **zero
  included** (as AMQP's ``#``): ``orders.**`` takes ``orders``, ``orders.created`` and
  ``orders.line.added``; ``a.**.b`` takes ``a.b`` and ``a.x.y.b``; ``**`` alone takes
  every type;
* every other character stands for itself (no ``?``, no ``[...]``).

A pattern is compiled once, when the configuration is loaded; matching is then a
string comparison for a pattern without wildcards and one anchored regular expression
for the others.
"""

from __future__ import annotations

import re

from eventcore.errors import InvalidInput

__all__ = ["TypePattern"]

_SEGMENT = r"[^.]*"


class TypePattern:
    """A compiled event-type pattern; ``TypePattern("user.*").matches("user.created")``."""

    __slots__ = ("_regex", "text")

    def __init__(self, text: str) -> None:
        problem = _problem(text)
        if problem is not None:
            raise InvalidInput(f"event-type pattern {text!r}: {problem}")
        self.text = text
        # None for a pattern without wildcards: it matches its own text only.
        self._regex = re.compile(_translate(text)) if "*" in text else None

    def matches(self, event_type: str) -> bool:
        if self._regex is None:
            return event_type == self.text
        return self._regex.fullmatch(event_type) is not None

    def __repr__(self) -> str:
        return f"TypePattern({self.text!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TypePattern) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)


def _problem(text: str) -> str | None:
    if not isinstance(text, str):
        return f"expected a string, got {type(text).__name__}"
    if not text.strip():
        return "it is empty"
    if text != text.strip():
        return "it starts or ends with white space"
    for segment in text.split("."):
        if "**" in segment and segment != "**":
            return "'**' must be a whole segment (as in 'orders.**'), not part of one"
    return None


def _translate(text: str) -> str:
    """The regular expression of a checked pattern (for ``fullmatch``)."""
    segments: list[str] = []
    for segment in text.split("."):
        # Two ``**`` in a row match what one does.
        if not (segment == "**" and segments and segments[-1] == "**"):
            segments.append(segment)
    last = len(segments) - 1
    parts: list[str] = []
    for index, segment in enumerate(segments):
        if segment == "**":
            if index == last:
                # Zero or more further segments: each brings its own leading dot.
                parts.append("(?s:.*)" if index == 0 else rf"(?:\.{_SEGMENT})*")
            else:
                # Zero or more segments, each with its trailing dot; the dot before
                # them belongs to the segment before.
                parts.append((r"\." if index else "") + rf"(?:{_SEGMENT}\.)*")
            continue
        if index and segments[index - 1] != "**":
            parts.append(r"\.")
        parts.append(_SEGMENT.join(re.escape(piece) for piece in segment.split("*")))
    return "".join(parts)
