"""What a store keeps as an event's payload: a JSON text that every reader can read.

A payload leaves the store verbatim: the relay puts it in the envelope's ``data``, a
subscriber decodes it with msgspec, other services read it with whatever CloudEvents
tooling they use (the Python SDK: the ``json`` module). So the store takes only what
all of these read, and refuses the rest at append, before any I/O:

* valid JSON in UTF-8 (any JSON value: object, array, string, number, literal);
* nested at most ``MAX_PAYLOAD_DEPTH`` arrays or objects deep. Every decoder on the way
  reads nesting by recursion, which Python bounds (about a thousand frames, shared with
  whatever called it), so a payload a thousand arrays deep would be stored and then fail
  every reader — or, where a reader did not expect ``RecursionError``, crash it;
* no number of more than ``MAX_NUMBER_DIGITS`` digits: Python's ``json`` refuses to read
  a longer integer (``sys.int_info.default_max_str_digits``).

The checks cost a fraction of a microsecond for a payload of ordinary size: counting
brackets proves most payloads shallow without parsing strings, msgspec's validating
skip reads the JSON without building it, and a payload shorter than the digit limit
cannot hold a long number.
"""

from __future__ import annotations

from typing import Final

import msgspec

__all__ = [
    "MAX_NUMBER_DIGITS",
    "MAX_PAYLOAD_DEPTH",
    "nesting_problem",
    "number_problem",
    "payload_problem",
]

#: The deepest nesting of arrays and objects a payload may have.
MAX_PAYLOAD_DEPTH: Final = 64
#: The most digits in a row a payload's number may have.
MAX_NUMBER_DIGITS: Final = 4300

#: Reading into ``Raw`` validates the JSON (strings' escapes, numbers, structure) without
#: building it; it does not check that strings are UTF-8, which is done apart.
_skip = msgspec.json.Decoder(msgspec.Raw)
_NOT_BRACKETS: Final = bytes(set(range(256)) - set(b"[]{}"))
_ONE_KIND: Final = bytes.maketrans(b"[]{}", b"()()")
_DIGITS_AS_ZERO: Final = bytes.maketrans(b"123456789", b"000000000")
_LONG_NUMBER: Final = b"0" * (MAX_NUMBER_DIGITS + 1)


def nesting_problem(text: bytes, limit: int) -> str | None:
    """Why the JSON ``text`` cannot be read within ``limit`` levels of nesting, or None.

    None means: if ``text`` is valid JSON, no array or object in it is nested deeper
    than ``limit``, so a recursive reader goes no deeper than that. For text that is not
    JSON the answer may be either; a reader then stops at the first error, which comes
    before any nesting this did not count."""
    if text.count(b"[") + text.count(b"{") <= limit:
        return None  # not even that many brackets, in strings or not
    # Arrays and objects alike: a reader descends one level for either. (An array closed
    # by a brace stops the reader there, no deeper than this counts.)
    brackets = _outside_strings(text).translate(_ONE_KIND, _NOT_BRACKETS)
    # Each round takes away the innermost pairs — one pass, so pairs that meet only once
    # those are gone wait for the next round: as many rounds as levels.
    for _ in range(limit):
        if not brackets:
            return None
        shorter = brackets.replace(b"()", b"")
        if len(shorter) == len(brackets):
            return "its brackets do not match (it is not JSON)"
        brackets = shorter
    if not brackets:
        return None
    return f"it nests arrays or objects deeper than {limit} levels"


def payload_problem(data: bytes) -> str | None:
    """Why ``data`` is not a payload a store keeps (see the module docs), or None."""
    problem = nesting_problem(data, MAX_PAYLOAD_DEPTH)
    if problem is not None:
        return problem
    try:
        _skip.decode(data)
    except msgspec.DecodeError as error:
        return f"it is not valid JSON: {error}"
    if not data.isascii():
        try:
            data.decode()
        except UnicodeDecodeError as error:
            return f"it is not valid UTF-8: {error.reason} at byte {error.start}"
    return number_problem(data)


def number_problem(text: bytes) -> str | None:
    """Why the JSON ``text`` has a number no reader reads, or None."""
    if len(text) > MAX_NUMBER_DIGITS and _has_long_number(text):
        return f"it has a number of more than {MAX_NUMBER_DIGITS} digits"
    return None


def _outside_strings(text: bytes) -> bytes:
    """``text`` without its JSON strings. Escapes go first, paired left to right as a
    JSON reader pairs them, so every quote left starts or ends a string."""
    unescaped = text.replace(b"\\\\", b"").replace(b'\\"', b"")
    return b"".join(unescaped.split(b'"')[0::2])


def _has_long_number(data: bytes) -> bool:
    if _LONG_NUMBER not in data.translate(_DIGITS_AS_ZERO):
        return False
    # Digits in a row, but maybe in a string (a long numeric id is fine there).
    return _LONG_NUMBER in _outside_strings(data).translate(_DIGITS_AS_ZERO)
