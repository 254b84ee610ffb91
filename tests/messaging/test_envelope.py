"""The envelope: what the relay publishes is a CloudEvents 1.0 event that carries the
stored event whole, and no bytes off the wire crash the reader."""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import msgspec
import pytest
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventcore.errors import InvalidMessage, MessageTooLarge
from eventcore.messaging.envelope import (
    DistributedEvent,
    decode_envelope,
    encode_envelope,
    envelope_of,
    envelopes_of,
)
from eventcore.store.payload import payload_problem
from eventcore.types import Metadata, StoredEvent, StreamId

RECORDED = datetime(2026, 11, 26, 12, 30, 5, 123456, tzinfo=UTC)
PUBLISHED = datetime(2026, 11, 26, 12, 30, 6, tzinfo=UTC)


def stored(
    *,
    data: bytes = b'{"user_id":"u-7","email":"ada@example.com"}',
    metadata: Metadata | None = None,
    version: int = 3,
    schema_version: int = 2,
) -> StoredEvent:
    return StoredEvent(
        41,
        StreamId("user-7"),
        version,
        uuid.UUID("6f1c2a34-5d6e-4f70-8a9b-0c1d2e3f4a5b"),
        "UserRegistered",
        schema_version,
        data,
        metadata
        or Metadata(
            correlation_id="req-1",
            causation_id="cmd-9",
            traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            tracestate="vendor=1",
            actor="alice",
            extra={"tenant": "acme"},
        ),
        RECORDED,
    )


def published() -> bytes:
    return encode_envelope(envelope_of(stored(), source="users", published_at=PUBLISHED))


def test_the_envelope_carries_every_attribute_of_the_stored_event() -> None:
    envelope = decode_envelope(published())

    assert envelope.id == "6f1c2a34-5d6e-4f70-8a9b-0c1d2e3f4a5b"
    assert envelope.source == "users"
    assert envelope.type == "UserRegistered"
    assert envelope.subject == "user-7"
    assert envelope.stream_id == StreamId("user-7")
    assert envelope.time == RECORDED
    assert envelope.stream_version == 3
    assert envelope.streamversion == "3"  # CloudEvents extensions travel as strings
    assert envelope.schema_version == 2
    assert envelope.publishedat == "2026-11-26T12:30:06Z"
    assert envelope.payload == b'{"user_id":"u-7","email":"ada@example.com"}'
    assert envelope.metadata == stored().metadata


@pytest.mark.parametrize(
    "publish",
    [
        lambda at: envelope_of(stored(), source="users", published_at=at),
        lambda at: envelopes_of([stored()], source="users", published_at=at)[0],
    ],
    ids=["one", "a batch"],
)
@pytest.mark.parametrize("hours", [2, -5])
def test_a_publish_time_in_another_zone_is_written_in_utc(
    publish: Callable[[datetime], DistributedEvent], hours: int
) -> None:
    local = PUBLISHED.astimezone(timezone(timedelta(hours=hours)))
    assert local.hour != PUBLISHED.hour
    assert publish(local).publishedat == "2026-11-26T12:30:06Z"


def test_the_cloudevents_sdk_reads_the_envelope() -> None:
    event = JSONFormat().read(CloudEvent, published())

    attributes = event.get_attributes()
    assert attributes["specversion"] == "1.0"
    assert attributes["id"] == "6f1c2a34-5d6e-4f70-8a9b-0c1d2e3f4a5b"
    assert attributes["source"] == "users"
    assert attributes["type"] == "UserRegistered"
    assert attributes["subject"] == "user-7"
    assert attributes["time"] == RECORDED
    assert attributes["datacontenttype"] == "application/json"
    assert attributes["streamversion"] == "3"
    assert attributes["correlationid"] == "req-1"
    assert attributes["causationid"] == "cmd-9"
    assert attributes["traceparent"].startswith("00-0af7651916cd43dd")
    assert event.get_data() == {"user_id": "u-7", "email": "ada@example.com"}


def test_what_the_cloudevents_sdk_writes_back_is_still_a_valid_envelope() -> None:
    format_ = JSONFormat()
    rewritten = format_.write(format_.read(CloudEvent, published()))

    envelope = decode_envelope(rewritten)

    assert envelope.id == "6f1c2a34-5d6e-4f70-8a9b-0c1d2e3f4a5b"
    assert msgspec.json.decode(envelope.payload) == {
        "user_id": "u-7",
        "email": "ada@example.com",
    }


def test_empty_metadata_leaves_the_optional_extensions_out() -> None:
    body = encode_envelope(
        envelope_of(stored(metadata=Metadata()), source="users", published_at=PUBLISHED)
    )

    fields = msgspec.json.decode(body)
    assert set(fields) == {
        "id",
        "source",
        "type",
        "subject",
        "time",
        "data",
        "specversion",
        "datacontenttype",
        "streamversion",
        "schemaversion",
        "publishedat",
    }
    assert decode_envelope(body).metadata == Metadata()


def test_the_payload_is_copied_not_re_encoded() -> None:
    # Key order and spacing survive: the relay forwards the stored bytes as they are.
    data = b'{"z": 1, "a": [1, 2]}'
    body = encode_envelope(envelope_of(stored(data=data), source="users"))

    assert data in body
    assert decode_envelope(body).payload == data


def _fields() -> dict[str, object]:
    fields: dict[str, object] = msgspec.json.decode(published())
    return fields


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"specversion": "0.3"}, "specversion"),
        ({"datacontenttype": "text/xml"}, "datacontenttype"),
        ({"id": ""}, "id is empty"),
        ({"source": ""}, "source is empty"),
        ({"type": ""}, "type is empty"),
        ({"subject": "   "}, "subject is not a stream id"),
        ({"subject": "a\x00b"}, "subject is not a stream id"),
        ({"streamversion": "three"}, "streamversion"),
        ({"streamversion": "0"}, "streamversion"),
        ({"streamversion": 3}, "not a valid envelope"),
        ({"schemaversion": "-1"}, "schemaversion"),
        ({"time": "yesterday"}, "not a valid envelope"),
        ({"metaextra": "[1, 2]"}, "metaextra"),
        ({"id": None}, "not a valid envelope"),
    ],
    ids=lambda value: str(value)[:30],
)
def test_an_invalid_attribute_is_a_typed_error_naming_it(
    change: dict[str, object], reason: str
) -> None:
    fields = _fields() | change

    with pytest.raises(InvalidMessage, match=reason):
        decode_envelope(msgspec.json.encode(fields))


@pytest.mark.parametrize("missing", ["id", "source", "type", "subject", "time", "data"])
def test_a_missing_required_attribute_is_a_typed_error(missing: str) -> None:
    fields = _fields()
    del fields[missing]

    with pytest.raises(InvalidMessage, match=missing):
        decode_envelope(msgspec.json.encode(fields))


@pytest.mark.parametrize(
    "body",
    [b"", b"not json", b"{", b"[]", b"null", b'"x"', b"\xff\xfe", b'{"id": 1}'],
    ids=repr,
)
def test_garbage_is_a_typed_error(body: bytes) -> None:
    with pytest.raises(InvalidMessage):
        decode_envelope(body)


def test_an_oversized_message_is_refused_before_it_is_parsed() -> None:
    body = published()

    with pytest.raises(MessageTooLarge) as raised:
        decode_envelope(body, max_bytes=len(body) - 1)

    assert raised.value.size == len(body)
    assert raised.value.limit == len(body) - 1
    assert decode_envelope(body, max_bytes=len(body)).id  # the limit itself is allowed


# The machine may be busy (CI runs other suites beside); slowness is not a failure here.
RELAXED = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


@RELAXED
@given(st.binary(max_size=300))
def test_no_bytes_crash_the_reader(body: bytes) -> None:
    with contextlib.suppress(InvalidMessage):
        decode_envelope(body)


@RELAXED
@given(
    st.dictionaries(
        st.sampled_from(sorted(DistributedEvent.__struct_fields__)),
        st.one_of(st.none(), st.text(max_size=20), st.integers(), st.booleans()),
    )
)
def test_no_json_object_crashes_the_reader(changes: dict[str, object]) -> None:
    body = msgspec.json.encode(_fields() | changes)
    try:
        envelope = decode_envelope(body)
    except InvalidMessage:
        return
    # Whatever is accepted is fully usable.
    assert envelope.stream_version >= 1
    assert envelope.stream_id
    envelope.metadata  # noqa: B018


KEPT_PAYLOADS = [
    b' {"b": [1, {"c": null}], "a": "z"} ',
    '{"name":"naïve ✓ 🎉","esc":"\\u0000\\"\\\\\\ud83c\\udf89"}'.encode(),
    b"[" * 64 + b"]" * 64,
    b'"%s"' % (b"[" * 1000),
    b"-1.5e300",
    b"null",
]


@pytest.mark.parametrize("data", KEPT_PAYLOADS, ids=lambda data: repr(data[:16]))
def test_any_payload_a_store_keeps_goes_on_the_wire_as_json_the_sdk_reads(data: bytes) -> None:
    assert payload_problem(data) is None  # the store keeps it
    body = encode_envelope(envelope_of(stored(data=data), source="users"))

    # The same bytes (whitespace around the value is not part of it).
    assert decode_envelope(body).payload == data.strip(b" \t\r\n")
    assert JSONFormat().read(CloudEvent, body).get_data() == json.loads(data)


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b'["\xff"]', "not valid UTF-8"),
        (b"[" * 65 + b"]" * 65, "deeper than"),
        (b"9" * 4301, "digits"),
    ],
    ids=["not-utf8", "65-deep", "long-number"],
)
def test_data_a_store_would_refuse_is_an_invalid_message(data: bytes, words: str) -> None:
    # Another producer may publish what our store would never have kept.
    fields = _fields()
    fields["data"] = "\x00raw\x00"
    body = msgspec.json.encode(fields).replace(b'"\\u0000raw\\u0000"', data)

    with pytest.raises(InvalidMessage, match=words):
        decode_envelope(body)
