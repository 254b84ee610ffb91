"""Hostile messages for the wire fuzz: what a broken or malicious producer, or a network
that corrupts bytes, could put on a topic.

``hostile_bodies`` draws from four families, each aimed at one way a reader can fail:

* any bytes at all;
* any JSON value (not an envelope);
* near-valid envelopes: a valid one with one attribute removed or given a wrong type
  (null, number, list, object, a huge or NUL-laden string), ``data`` or an attribute
  nested up to thousands of levels deep, an unknown attribute nested deep;
* a valid envelope's bytes corrupted: invalid UTF-8 or a NUL byte put anywhere, cut
  short anywhere, one byte changed.

``valid_body(n)`` is a well-formed envelope of a ``Deposited`` event with ``amount`` n.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import msgspec
from hypothesis import strategies as st

from eventcore.events import Event, EventRegistry
from eventcore.messaging.envelope import DistributedEvent, encode_envelope, envelope_of
from eventcore.types import Metadata, StoredEvent, StreamId

__all__ = [
    "KNOWN_HOSTILE",
    "Deposited",
    "hostile_bodies",
    "registry",
    "valid_body",
    "with_deep_data",
]


class Deposited(Event):
    amount: int


registry = EventRegistry([Deposited])
_RECORDED = datetime(2026, 5, 4, 3, 2, 1, tzinfo=UTC)


def valid_body(amount: int, *, stream: str = "account-1", version: int = 1) -> bytes:
    stored = StoredEvent(
        amount,
        StreamId(stream),
        version,
        uuid.uuid4(),
        "Deposited",
        1,
        b'{"amount":%d}' % amount,
        Metadata(correlation_id="c-1", extra={"tenant": "t"}),
        _RECORDED,
    )
    return encode_envelope(envelope_of(stored, source="bank", published_at=_RECORDED))


_TEMPLATE: dict[str, Any] = msgspec.json.decode(valid_body(1))
_ATTRIBUTES = sorted({*DistributedEvent.__struct_fields__, "data"})
#: Stands for raw bytes spliced in after encoding (for nesting msgspec will not encode).
_SPLICE = "\x00splice\x00"
_SPLICED = msgspec.json.encode(_SPLICE)


def _nested(depth: int, bracket: str) -> bytes:
    if bracket == "[":
        return b"[" * depth + b"]" * depth
    return b'{"a":' * depth + b"1" + b"}" * depth


#: Depths around the limit and around Python's recursion limit, and anything between.
_depths = st.one_of(st.sampled_from([1, 63, 64, 65, 66, 900, 1000, 3000]), st.integers(0, 3000))
_deep = st.builds(_nested, _depths, st.sampled_from("[{"))

_wrong_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(max_size=20),
    st.just(""),
    st.just("a\x00b"),
    st.just("x" * 200_000),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
)

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=12,
)


@st.composite
def _wrong_attribute(draw: st.DrawFn) -> bytes:
    fields = dict(_TEMPLATE)
    name = draw(st.sampled_from([*_ATTRIBUTES, "unknownext"]))
    if draw(st.booleans()) and name in fields:
        del fields[name]
        return msgspec.json.encode(fields)
    fields[name] = draw(_wrong_values)
    return msgspec.json.encode(fields)


@st.composite
def _deep_attribute(draw: st.DrawFn) -> bytes:
    fields = dict(_TEMPLATE)
    # Where a reader skips rather than checks a type (``data``, an unknown attribute)
    # is where nesting reaches its recursion, so those come up most.
    name = draw(st.one_of(st.sampled_from(["data", "unknownext"]), st.sampled_from(_ATTRIBUTES)))
    fields[name] = _SPLICE
    return msgspec.json.encode(fields).replace(_SPLICED, draw(_deep))


@st.composite
def _corrupted(draw: st.DrawFn) -> bytes:
    body = valid_body(draw(st.integers(1, 1000)))
    at = draw(st.integers(0, len(body)))
    how = draw(st.sampled_from(["invalid-utf8", "nul", "cut", "change"]))
    if how == "invalid-utf8":
        bad = draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x80\x80", b"\xf5"]))
        return body[:at] + bad + body[at:]
    if how == "nul":
        return body[:at] + b"\x00" + body[at:]
    if how == "cut":
        return body[:at]
    index = min(at, len(body) - 1)
    return body[:index] + bytes([draw(st.integers(0, 255))]) + body[index + 1 :]


def with_deep_data(depth: int) -> bytes:
    """The issue's message: a valid envelope whose ``data`` is ``depth`` arrays deep."""
    return valid_body(1).replace(b'{"amount":1}', _nested(depth, "["))


#: Cases every run tries, besides what hypothesis draws: each once crashed a reader.
KNOWN_HOSTILE = [
    with_deep_data(1000),
    msgspec.json.encode({**_TEMPLATE, "unknownext": _SPLICE}).replace(_SPLICED, _nested(3000, "{")),
    valid_body(1).replace(b'"schemaversion"', b'"\xffschemaversion"'),
    valid_body(1).replace(b'{"amount":1}', b'["\xff"]'),
]

hostile_bodies = st.one_of(
    st.binary(max_size=512),
    _json_values.map(msgspec.json.encode),
    _wrong_attribute(),
    _deep_attribute(),
    _corrupted(),
)
