"""Building a rule's transformations from its ``transforms`` array (see
``eventcore.federation.config`` for the format)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, Final

from eventcore.errors import InvalidInput, MissingDependency
from eventcore.federation._reader import Reader, kind
from eventcore.federation.fields import FieldPath
from eventcore.federation.pii import Tokenizer, check_secret
from eventcore.federation.transforms import (
    Drop,
    Function,
    Hash,
    Keep,
    Mask,
    Redact,
    RenameField,
    RenameType,
    SetSource,
    Step,
    Tokenize,
)

__all__ = ["OPS", "read_steps"]

#: The most characters ``mask`` may leave in view.
MAX_MASK_KEEP: Final = 64


def read_steps(reader: Reader, value: object) -> tuple[Step, ...] | None:
    if not isinstance(value, list):
        reader.problem("transforms", f"expected an array of tables, got {kind(value)}")
        return None
    steps: list[Step] = []
    good = True
    for index, entry in enumerate(value):
        step = _read_step(reader, entry, f"transforms[{index}]")
        good = good and step is not None
        if step is not None:
            steps.append(step)
    return tuple(steps) if good else None


def _read_step(reader: Reader, entry: object, name: str) -> Step | None:
    if not isinstance(entry, dict):
        reader.problem(name, f"expected a table, got {kind(entry)}")
        return None
    op = reader.take(entry, "op", f"{name}.op", str)
    if op is None:
        return None
    spec = OPS.get(op)
    if spec is None:
        reader.problem(f"{name}.op", f"unknown op {op!r} (known: {', '.join(OPS)})")
        return None
    fields, build = spec
    reader.table(entry, name, ("op", *fields))
    return build(reader, entry, name)


def _text(
    reader: Reader, entry: dict[str, Any], key: str, name: str, *, required: bool = True
) -> str | None:
    def nonempty(value: str) -> str | None:
        if value.strip():
            return value
        reader.problem(f"{name}.{key}", "must not be empty")
        return None

    return reader.take(entry, key, f"{name}.{key}", str, nonempty, required=required)


def _path(reader: Reader, value: object, name: str) -> FieldPath | None:
    if not isinstance(value, str):
        reader.problem(name, f"expected a dotted field path, got {kind(value)}")
        return None
    return reader.built(name, lambda: FieldPath(value))


def _fields(reader: Reader, entry: dict[str, Any], name: str) -> tuple[FieldPath, ...] | None:
    listed = reader.take(entry, "fields", f"{name}.fields", list)
    if listed is None:
        return None
    if not listed:
        reader.problem(f"{name}.fields", "must name at least one field")
        return None
    paths = [_path(reader, each, f"{name}.fields[{i}]") for i, each in enumerate(listed)]
    found = [path for path in paths if path is not None]
    if len(found) != len(paths):
        return None
    for later, path in enumerate(found):
        for earlier in found[:later]:
            if path.overlaps(earlier):
                reader.problem(
                    f"{name}.fields[{later}]",
                    f"{path.text!r} overlaps {earlier.text!r}: name each field once",
                )
                return None
    return tuple(found)


def _rename_type(reader: Reader, entry: dict[str, Any], name: str) -> Step | None:
    to = _text(reader, entry, "to", name)
    return RenameType(to) if to is not None else None


def _set_source(reader: Reader, entry: dict[str, Any], name: str) -> Step | None:
    to = reader.take(entry, "to", f"{name}.to", str, reader.name_of("service", f"{name}.to"))
    return SetSource(to) if to is not None else None


def _keep(reader: Reader, entry: dict[str, Any], name: str) -> Step | None:
    fields = _fields(reader, entry, name)
    return Keep(fields) if fields is not None else None


def _drop(reader: Reader, entry: dict[str, Any], name: str) -> Step | None:
    fields = _fields(reader, entry, name)
    return Drop(fields) if fields is not None else None


def _rename(reader: Reader, entry: dict[str, Any], name: str) -> Step | None:
    paths = {}
    for key in ("from", "to"):
        value = reader.take(entry, key, f"{name}.{key}", str)
        paths[key] = _path(reader, value, f"{name}.{key}") if value is not None else None
    source, target = paths["from"], paths["to"]
    if source is None or target is None:
        return None
    if source.overlaps(target):
        reader.problem(f"{name}.to", f"{target.text!r} overlaps {source.text!r}")
        return None
    return RenameField(source, target)


def _hash(reader: Reader, entry: dict[str, Any], name: str) -> Step | None:
    fields = _fields(reader, entry, name)
    key = _key(reader, entry, name)
    if fields is None or key is None:
        return None
    return Hash(fields, key[1], key[0])


def _key(reader: Reader, entry: dict[str, Any], name: str) -> tuple[str, bytes] | None:
    secret = reader.secret(entry, "key_env", f"{name}.key_env")
    if secret is None:
        return None
    found = reader.built(f"{name}.key_env", lambda: check_secret(secret[1]))
    return secret if found is not None else None


def _redact(reader: Reader, entry: dict[str, Any], name: str) -> Step | None:
    fields = _fields(reader, entry, name)
    marker = _text(reader, entry, "marker", name, required=False)
    if fields is None or ("marker" in entry and marker is None):
        return None
    return Redact(fields) if marker is None else Redact(fields, marker)


def _mask(reader: Reader, entry: dict[str, Any], name: str) -> Step | None:
    fields = _fields(reader, entry, name)

    def in_range(value: int) -> int | None:
        if 1 <= value <= MAX_MASK_KEEP:
            return value
        reader.problem(f"{name}.keep", f"must be from 1 to {MAX_MASK_KEEP}, got {value}")
        return None

    def one_char(value: str) -> str | None:
        if len(value) == 1 and value.isprintable():
            return value
        reader.problem(f"{name}.char", f"must be one printable character, got {value!r}")
        return None

    keep = reader.take(entry, "keep", f"{name}.keep", int, in_range, required=False)
    char = reader.take(entry, "char", f"{name}.char", str, one_char, required=False)
    bad = ("keep" in entry and keep is None) or ("char" in entry and char is None)
    if fields is None or bad:
        return None
    mask = Mask(fields)
    return Mask(fields, keep or mask.keep, char or mask.char)


def _tokenize(reader: Reader, entry: dict[str, Any], name: str) -> Step | None:
    fields = _fields(reader, entry, name)
    key = _key(reader, entry, name)
    if fields is None or key is None:
        return None
    try:
        tokenizer = Tokenizer(key[1])
    except MissingDependency as error:
        reader.problem(f"{name}.op", str(error))
        return None
    return Tokenize(fields, tokenizer, key[0])


def _function(reader: Reader, entry: dict[str, Any], name: str) -> Step | None:
    reference = reader.take(entry, "function", f"{name}.function", str)
    if reference is None:
        return None
    found = reader.built(f"{name}.function", lambda: load_function(reference))
    return Function(reference, found) if found is not None else None


def load_function(reference: str) -> Callable[..., object]:
    """The callable ``module:attribute`` names (the attribute may be dotted)."""
    module_name, _, attribute = reference.partition(":")
    if not module_name or not attribute:
        raise InvalidInput(f"expected module:function, got {reference!r}")
    try:
        value: Any = importlib.import_module(module_name)
    except ImportError as error:
        raise InvalidInput(f"cannot import {module_name!r}: {error}") from None
    except Exception as error:  # the user's module failed as it loaded: their bug, said once
        raise InvalidInput(
            f"importing {module_name!r} failed: {type(error).__name__}: {error}"
        ) from None
    for part in attribute.split("."):
        if not hasattr(value, part):
            raise InvalidInput(f"{module_name!r} has no attribute {attribute!r}")
        value = getattr(value, part)
    if not callable(value):
        raise InvalidInput(f"{reference!r} is {kind(value)}, not a function")
    function: Callable[..., object] = value
    return function


_Build = Callable[[Reader, dict[str, Any], str], "Step | None"]

#: Each op: the fields it takes besides ``op``, and how it is built.
OPS: Final[dict[str, tuple[tuple[str, ...], _Build]]] = {
    "rename-type": (("to",), _rename_type),
    "set-source": (("to",), _set_source),
    "keep": (("fields",), _keep),
    "drop": (("fields",), _drop),
    "rename": (("from", "to"), _rename),
    "hash": (("fields", "key_env"), _hash),
    "redact": (("fields", "marker"), _redact),
    "mask": (("fields", "keep", "char"), _mask),
    "tokenize": (("fields", "key_env"), _tokenize),
    "function": (("function",), _function),
}
