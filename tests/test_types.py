"""Value types: StreamId validation and Metadata."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from eventcore.errors import InvalidInput, InvalidStreamId
from eventcore.types import Metadata, NewEvent, StreamId


@pytest.mark.parametrize(
    ("raw", "trimmed"),
    [
        ("order-1", "order-1"),
        ("  order-1  ", "order-1"),
        ("\torder-1\n", "order-1"),
        ("order 1", "order 1"),
        ("x" * 255, "x" * 255),
        ("  " + "x" * 255 + "\n", "x" * 255),
        ("naïve-✓", "naïve-✓"),
    ],
    ids=["plain", "spaces", "tab-newline", "inner-space", "255", "255-padded", "unicode"],
)
def test_stream_id_accepts_and_trims_valid_names(raw: str, trimmed: str) -> None:
    stream_id = StreamId(raw)

    assert stream_id == trimmed
    assert isinstance(stream_id, str)
    assert type(stream_id) is StreamId


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("x" * 256, "256 characters"),
        ("a\x00b", "control character"),
        ("a\nb", "control character"),
        ("a\x1bb", "control character"),
        ("a\x7fb", "control character"),
        ("a\x9fb", "control character"),
    ],
    ids=["empty", "blank", "256", "nul", "newline", "escape", "del", "c1"],
)
def test_stream_id_rejects_invalid_names_with_a_reason(raw: str, reason: str) -> None:
    with pytest.raises(InvalidStreamId) as caught:
        StreamId(raw)

    assert reason in caught.value.reason
    assert caught.value.value == raw
    assert reason in str(caught.value)


@pytest.mark.parametrize("raw", [42, None, b"order-1", ["order-1"]], ids=repr)
def test_stream_id_rejects_non_strings(raw: Any) -> None:
    with pytest.raises(InvalidStreamId) as caught:
        StreamId(raw)

    assert type(raw).__name__ in caught.value.reason


def test_stream_id_errors_are_invalid_input() -> None:
    with pytest.raises(InvalidInput):
        StreamId("")
    with pytest.raises(ValueError, match="invalid stream id"):
        StreamId("")


def test_stream_id_names_the_offending_control_character_and_index() -> None:
    with pytest.raises(InvalidStreamId, match=r"'\\x00' at index 3"):
        StreamId("abc\x00")


def test_stream_id_of_a_stream_id_is_the_same_object() -> None:
    stream_id = StreamId("order-1")

    assert StreamId(stream_id) is stream_id


def test_stream_id_repr_is_the_trimmed_string_repr() -> None:
    # Plain, so error messages read "stream 'order-1' is at version …".
    assert repr(StreamId(" order-1 ")) == "'order-1'"


def test_stream_id_equals_and_hashes_as_its_string() -> None:
    assert {StreamId("a"): 1}["a"] == 1
    assert str(StreamId(" a ")) == "a"


def test_metadata_defaults_are_empty() -> None:
    metadata = Metadata()

    assert (metadata.correlation_id, metadata.actor, metadata.extra) == (None, None, {})


def test_metadata_merged_takes_every_field_the_other_sets() -> None:
    base = Metadata(correlation_id="c1", causation_id="x1", actor="alice", extra={"a": "1"})
    other = Metadata(
        causation_id="x2",
        traceparent="00-abc-def-01",
        tracestate="k=v",
        actor="bob",
        extra={"b": "2"},
    )

    merged = base.merged(other)

    assert merged == Metadata(
        correlation_id="c1",
        causation_id="x2",
        traceparent="00-abc-def-01",
        tracestate="k=v",
        actor="bob",
        extra={"a": "1", "b": "2"},
    )


def test_metadata_merged_extra_prefers_the_other_on_the_same_key() -> None:
    merged = Metadata(extra={"k": "old", "keep": "1"}).merged(Metadata(extra={"k": "new"}))

    assert merged.extra == {"k": "new", "keep": "1"}


def test_metadata_merged_with_empty_keeps_everything() -> None:
    base = Metadata(correlation_id="c1", tracestate="k=v", extra={"a": "1"})

    assert base.merged(Metadata()) == base
    assert Metadata().merged(base) == base


def test_metadata_merged_leaves_both_inputs_unchanged() -> None:
    base = Metadata(extra={"a": "1"})
    other = Metadata(extra={"b": "2"})

    base.merged(other)

    assert (base.extra, other.extra) == ({"a": "1"}, {"b": "2"})


def test_metadata_is_frozen() -> None:
    with pytest.raises(AttributeError):
        Metadata().actor = "mallory"  # type: ignore[misc]


def test_metadata_round_trips_through_json() -> None:
    metadata = Metadata(correlation_id="c", traceparent="tp", extra={"k": "v"})

    assert msgspec.json.decode(msgspec.json.encode(metadata), type=Metadata) == metadata


def test_new_events_get_distinct_ids_and_schema_version_one() -> None:
    first = NewEvent(type="A", data=b"{}")
    second = NewEvent(type="A", data=b"{}")

    assert first.event_id != second.event_id
    assert first.schema_version == 1
    assert first.metadata == Metadata()
