"""Reading checked values out of a parsed TOML document, one problem per bad field.

A ``Reader`` collects ``ConfigProblem``s instead of raising at the first: the user
sees every mistake of a file at once, and the loader refuses the file whole if there
is any. Each ``take_*`` returns the value, or ``None`` when it recorded a problem (or
the field is optional and absent).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from eventcore.errors import ConfigProblem, InvalidInput, InvalidName
from eventcore.messaging.names import check_name

T = TypeVar("T")

_MISSING: Any = object()

# In this order: a bool is also an int.
_KINDS: tuple[tuple[type, str], ...] = (
    (bool, "a boolean"),
    (str, "text"),
    (int, "an integer"),
    (float, "a number"),
    (dict, "a table"),
    (list, "an array"),
)


def kind(value: object) -> str:
    """What a TOML value is, in words."""
    for python_type, words in _KINDS:
        if isinstance(value, python_type):
            return words
    return f"a {type(value).__name__}"  # TOML's dates and times


@dataclass
class Reader:
    file: str
    environ: Mapping[str, str]
    problems: list[ConfigProblem] = field(default_factory=list)
    #: The rule being read (None outside the rules), and the prefix of field names
    #: when the rule has no usable name yet (``rules[3].``).
    rule: str | None = None
    prefix: str = ""
    #: Every bus alias the file declares, usable or not.
    declared: set[str] = field(default_factory=set)

    def problem(self, name: str, reason: str) -> None:
        where = self.prefix + name if name else self.prefix.rstrip(".") or "file"
        self.problems.append(ConfigProblem(self.file, self.rule, where, reason))

    def table(self, value: object, name: str, known: Iterable[str]) -> dict[str, Any] | None:
        """``value`` if it is a table with only ``known`` keys (each unknown one is a
        problem, but the table is still read)."""
        if not isinstance(value, dict):
            self.problem(name, f"expected a table, got {kind(value)}")
            return None
        allowed = set(known)
        for key in value:
            if key not in allowed:
                listed = ", ".join(sorted(allowed))
                where = f"{name}.{key}" if name else key
                self.problem(where, f"unknown field (known: {listed})")
        return value

    def take(
        self,
        table: Mapping[str, Any],
        key: str,
        name: str,
        expected: type[T],
        check: Callable[[T], T | None] | None = None,
        *,
        required: bool = True,
    ) -> T | None:
        value = table.get(key, _MISSING)
        if value is _MISSING:
            if required:
                self.problem(name, "missing")
            return None
        # bool is an int to Python, never to a TOML reader.
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            wanted = {str: "text", int: "an integer", bool: "a boolean", list: "an array"}
            self.problem(name, f"expected {wanted.get(expected, 'a table')}, got {kind(value)}")
            return None
        return check(value) if check is not None else value

    def name_of(self, kind_name: str, name: str) -> Callable[[str], str | None]:
        """A check that the text is a usable bus name (topic, service…)."""

        def check(value: str) -> str | None:
            try:
                return check_name(kind_name, value)
            except InvalidName as error:
                self.problem(name, f"must be a usable {kind_name} name: {error.reason}")
                return None

        return check

    def built(self, name: str, make: Callable[[], T]) -> T | None:
        """``make()``, with an ``InvalidInput`` it raises recorded as a problem."""
        try:
            return make()
        except InvalidInput as error:
            self.problem(name, str(error))
            return None

    def secret(self, table: Mapping[str, Any], key: str, name: str) -> tuple[str, bytes] | None:
        """(variable, value) of the environment variable the field names."""
        variable = self.take(table, key, name, str)
        if variable is None:
            return None
        if not variable:
            self.problem(name, "must name an environment variable")
            return None
        value = self.environ.get(variable)
        if value is None:
            self.problem(name, f"the environment variable {variable} is not set")
            return None
        # As the operating system gave it: os.environ keeps undecodable bytes as
        # surrogates, and surrogateescape turns them back.
        return variable, value.encode("utf-8", "surrogateescape")
