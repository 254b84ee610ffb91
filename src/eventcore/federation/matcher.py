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

A pattern is compiled once, when the configuration is loaded. Matching never uses a
regular expression: a type comes from whoever published the event, and a backtracking
engine takes time polynomial in its length for patterns such as ``*a*a*a*b`` (an
800-character type held one for minutes). Here a segment's glob is matched by finding
its literal pieces left to right (``str.find``), and ``**`` by finding the groups of
segments between them left to right in the same way; leftmost is always right when the
only wildcards match "anything", so no step is ever retried and the time is linear in
the type's length for a given pattern.
"""

from __future__ import annotations

from eventcore.errors import InvalidInput

__all__ = ["TypePattern"]


class _Glob:
    """One segment of a pattern: literal pieces with ``*`` between them."""

    __slots__ = ("first", "last", "middle", "pieces", "shortest")

    def __init__(self, segment: str) -> None:
        self.pieces = segment.split("*")
        self.first, self.last = self.pieces[0], self.pieces[-1]
        self.middle = self.pieces[1:-1]
        self.shortest = sum(map(len, self.pieces))

    def matches(self, text: str) -> bool:
        if len(self.pieces) == 1:
            return text == self.first
        if len(text) < self.shortest or not (
            text.startswith(self.first) and text.endswith(self.last)
        ):
            return False
        at, end = len(self.first), len(text) - len(self.last)
        for piece in self.middle:
            found = text.find(piece, at, end)
            if found < 0:
                return False
            at = found + len(piece)
        return True


def _run_matches(globs: list[_Glob], segments: list[str], start: int) -> bool:
    return all(glob.matches(segments[start + i]) for i, glob in enumerate(globs))


class TypePattern:
    """A compiled event-type pattern; ``TypePattern("user.*").matches("user.created")``."""

    __slots__ = ("_groups", "_wild", "text")

    def __init__(self, text: str) -> None:
        problem = _problem(text)
        if problem is not None:
            raise InvalidInput(f"event-type pattern {text!r}: {problem}")
        self.text = text
        # The runs of single segments between ``**``s: ``a.**.b.*`` is [[a], [b, *]].
        # Without ``**`` there is one run, which must cover the whole type.
        groups: list[list[_Glob]] = [[]]
        for segment in text.split("."):
            if segment == "**":
                groups.append([])
            else:
                groups[-1].append(_Glob(segment))
        self._groups = groups
        self._wild = "*" in text

    def matches(self, event_type: str) -> bool:
        if not self._wild:
            return event_type == self.text
        segments = event_type.split(".")
        groups = self._groups
        if len(groups) == 1:
            return len(segments) == len(groups[0]) and _run_matches(groups[0], segments, 0)
        head, *middle, tail = groups
        if len(segments) < sum(map(len, groups)):
            return False
        if not _run_matches(head, segments, 0):
            return False
        end = len(segments) - len(tail)
        if not _run_matches(tail, segments, end):
            return False
        at = len(head)
        for run in middle:
            # The leftmost place this run fits, before the tail's segments.
            while at + len(run) <= end and not _run_matches(run, segments, at):
                at += 1
            if at + len(run) > end:
                return False
            at += len(run)
        return True

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
