"""Contract: bad input of any kind is a typed error and writes nothing (§3, last bullet)."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
import pytest_asyncio

from eventcore.errors import (
    EmptyAppend,
    InvalidAppend,
    InvalidInput,
    InvalidPayload,
    InvalidStreamId,
    PayloadTooLarge,
    UndeclaredStream,
)
from eventcore.store import EventStore
from eventcore.store.payload import MAX_NUMBER_DIGITS, MAX_PAYLOAD_DEPTH
from eventcore.store.request import DEFAULT_MAX_PAYLOAD_BYTES
from eventcore.testing._builders import events, new_event
from eventcore.testing._reading import snapshot
from eventcore.testing._store_fixtures import MakeStore
from eventcore.types import Metadata, NewEvent, StreamId

A = StreamId("a")
B = StreamId("b")

INVALID_STREAM_IDS: list[Any] = [
    pytest.param("", id="empty"),
    pytest.param("   \t ", id="whitespace"),
    pytest.param("x" * 256, id="256-chars"),
    pytest.param("  " + "x" * 256 + "  ", id="256-chars-padded"),
    pytest.param("a\x00b", id="nul"),
    pytest.param("a\nb", id="newline-inside"),
    pytest.param("a\x7fb", id="del"),
    pytest.param("a\x85b", id="c1-control"),
    pytest.param(42, id="int"),
    pytest.param(None, id="none"),
    pytest.param(b"bytes", id="bytes"),
]


async def assert_rejected(store: EventStore, error: type[Exception], **append: Any) -> Exception:
    """Append with ``append``, expect ``error``, and check the store did not change."""
    before = await snapshot(store)
    with pytest.raises(error) as caught:
        await store.append(**append)
    assert await snapshot(store) == before
    return caught.value


# --- stream ids ----------------------------------------------------------------------------


# --- the shape of an append ----------------------------------------------------------------


# --- payload size --------------------------------------------------------------------------


# --- payload form --------------------------------------------------------------------------


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


class BadInputContract:
    """Part of :class:`StoreContract`: bad input of any kind is a typed error and
    writes nothing (§3, last bullet)."""

    @pytest_asyncio.fixture
    async def seeded(self, store: EventStore) -> EventStore:
        """A store holding a=1 event, so "nothing written" has something to compare against."""
        await store.append({A: events(1)}, expected={A: 0})
        return store

    @pytest.mark.parametrize("bad", INVALID_STREAM_IDS)
    @pytest.mark.asyncio
    async def test_append_rejects_invalid_stream_id_in_writes(
        self, seeded: EventStore, bad: Any
    ) -> None:
        error = await assert_rejected(
            seeded, InvalidStreamId, writes={A: events(1), bad: events(1)}, expected={A: 1, bad: 0}
        )
        assert isinstance(error, InvalidInput)

    @pytest.mark.parametrize("bad", INVALID_STREAM_IDS)
    @pytest.mark.asyncio
    async def test_append_rejects_invalid_stream_id_in_expected(
        self, seeded: EventStore, bad: Any
    ) -> None:
        await assert_rejected(
            seeded, InvalidStreamId, writes={A: events(1)}, expected={A: 1, bad: 0}
        )

    @pytest.mark.parametrize("bad", INVALID_STREAM_IDS)
    @pytest.mark.asyncio
    async def test_read_stream_rejects_invalid_stream_id(self, store: EventStore, bad: Any) -> None:
        with pytest.raises(InvalidStreamId):
            await store.read_stream(bad)

    @pytest.mark.parametrize("bad", INVALID_STREAM_IDS)
    @pytest.mark.asyncio
    async def test_stream_version_rejects_invalid_stream_id(
        self, store: EventStore, bad: Any
    ) -> None:
        with pytest.raises(InvalidStreamId):
            await store.stream_version(bad)

    @pytest.mark.asyncio
    async def test_stream_id_of_255_characters_is_accepted(self, store: EventStore) -> None:
        longest = StreamId("x" * 255)

        await store.append({longest: events(1)}, expected={longest: 0})

        assert await store.stream_version(longest) == 1
        assert [head.stream_id for head in await store.list_streams()] == [longest]

    @pytest.mark.asyncio
    async def test_append_rejects_stream_named_twice_in_writes(self, seeded: EventStore) -> None:
        await assert_rejected(
            seeded, InvalidAppend, writes={"b": events(1), " b ": events(1)}, expected={B: 0}
        )

    @pytest.mark.asyncio
    async def test_append_rejects_stream_named_twice_in_expected(self, seeded: EventStore) -> None:
        await assert_rejected(
            seeded, InvalidAppend, writes={A: events(1)}, expected={"a": 1, "a ": 0}
        )

    @pytest.mark.asyncio
    async def test_append_of_no_streams_is_rejected_as_empty(self, seeded: EventStore) -> None:
        await assert_rejected(seeded, EmptyAppend, writes={}, expected={A: 1})

    @pytest.mark.asyncio
    async def test_append_of_only_empty_event_lists_is_rejected_as_empty(
        self, seeded: EventStore
    ) -> None:
        await assert_rejected(seeded, EmptyAppend, writes={A: [], B: []}, expected={A: 1, B: 0})

    @pytest.mark.asyncio
    async def test_append_to_stream_missing_from_expected_is_undeclared(
        self, seeded: EventStore
    ) -> None:
        error = await assert_rejected(
            seeded, UndeclaredStream, writes={A: events(1), B: events(1)}, expected={A: 1}
        )
        assert isinstance(error, UndeclaredStream)
        assert error.stream_id == B

    @pytest.mark.parametrize(
        "version",
        [-1, 1.0, "1", None, True],
        ids=["negative", "float", "str", "none", "bool"],
    )
    @pytest.mark.asyncio
    async def test_append_rejects_expected_version_that_is_not_a_non_negative_int(
        self, seeded: EventStore, version: Any
    ) -> None:
        await assert_rejected(seeded, InvalidAppend, writes={B: events(1)}, expected={B: version})

    @pytest.mark.asyncio
    async def test_append_rejects_bad_expected_version_of_read_only_stream(
        self,
        seeded: EventStore,
    ) -> None:
        await assert_rejected(seeded, InvalidAppend, writes={A: events(1)}, expected={A: 1, B: -1})

    @pytest.mark.parametrize(
        "key",
        ["", "   ", 7, "k\x00ey", "k" * 1025],
        ids=["empty", "whitespace", "int", "nul", "too-long"],
    )
    @pytest.mark.asyncio
    async def test_append_rejects_invalid_idempotency_key(
        self, seeded: EventStore, key: Any
    ) -> None:
        await assert_rejected(
            seeded, InvalidAppend, writes={A: events(1)}, expected={A: 1}, idempotency_key=key
        )

    @pytest.mark.asyncio
    async def test_idempotency_key_of_1024_characters_is_accepted(self, store: EventStore) -> None:
        key = "k" * 1024

        first = await store.append({A: events(1)}, expected={A: 0}, idempotency_key=key)

        assert await store.find_append(key) == msgspec.structs.replace(first, deduplicated=True)

    @pytest.mark.asyncio
    async def test_append_rejects_something_that_is_not_a_new_event(
        self, seeded: EventStore
    ) -> None:
        await assert_rejected(
            seeded, InvalidAppend, writes={A: [new_event(), {"type": "X"}]}, expected={A: 1}
        )

    @pytest.mark.parametrize(
        "event_type",
        [
            pytest.param("", id="empty"),
            pytest.param("X" * 256, id="256-chars"),
            pytest.param("Order\x00Placed", id="nul"),
            pytest.param("Order\nPlaced", id="newline"),
            pytest.param("Order\x1fPlaced", id="last-c0-control"),
            pytest.param("Order\x7fPlaced", id="del"),
            pytest.param("Order\x80Placed", id="first-c1-control"),
            pytest.param("Order\x85Placed", id="c1-next-line"),
            pytest.param("Order\x9fPlaced", id="last-c1-control"),
        ],
    )
    @pytest.mark.asyncio
    async def test_append_rejects_event_with_an_invalid_type(
        self, seeded: EventStore, event_type: str
    ) -> None:
        await assert_rejected(
            seeded, InvalidAppend, writes={A: [new_event(type=event_type)]}, expected={A: 1}
        )

    @pytest.mark.parametrize(
        "event_type",
        [
            pytest.param("X" * 255, id="255-chars"),
            pytest.param("Order Placed", id="space"),
            pytest.param("Order~Placed", id="tilde-before-del"),
            pytest.param("Order\xa0Placed", id="no-break-space-after-c1"),
            pytest.param("Bestellung\u00fcbermittelt", id="non-ascii-letter"),
        ],
    )
    @pytest.mark.asyncio
    async def test_event_type_of_printable_characters_is_stored_as_given(
        self, store: EventStore, event_type: str
    ) -> None:
        await store.append({A: [new_event(type=event_type)]}, expected={A: 0})

        assert [event.type for event in await store.read_stream(A)] == [event_type]

    @pytest.mark.parametrize(
        "metadata",
        [
            *(
                pytest.param(Metadata(**{field: "a\x00b"}), id=field)  # type: ignore[arg-type]
                for field in (
                    "correlation_id",
                    "causation_id",
                    "traceparent",
                    "tracestate",
                    "actor",
                )
            ),
            pytest.param(Metadata(extra={"k": "a\x00b"}), id="extra-value"),
            pytest.param(Metadata(extra={"k\x00": "v"}), id="extra-key"),
        ],
    )
    @pytest.mark.asyncio
    async def test_append_rejects_metadata_holding_a_nul(
        self, seeded: EventStore, metadata: Metadata
    ) -> None:
        # PostgreSQL text cannot hold NUL; every backend refuses it so a store can move.
        await assert_rejected(
            seeded, InvalidAppend, writes={A: [new_event(metadata=metadata)]}, expected={A: 1}
        )

    @pytest.mark.parametrize(
        "event",
        [
            pytest.param(NewEvent(type=7, data=b"{}"), id="type-not-str"),  # type: ignore[arg-type]
            pytest.param(NewEvent(type="A", data="{}"), id="data-str"),  # type: ignore[arg-type]
            pytest.param(NewEvent(type="A", data=b"{}", event_id="x"), id="event-id-str"),  # type: ignore[arg-type]
            pytest.param(NewEvent(type="A", data=b"{}", schema_version=0), id="schema-version-0"),
            pytest.param(
                NewEvent(type="A", data=b"{}", schema_version="1"),  # type: ignore[arg-type]
                id="schema-version-str",
            ),
            pytest.param(
                NewEvent(type="A", data=b"{}", schema_version=True), id="schema-version-bool"
            ),
            pytest.param(NewEvent(type="A", data=b"{}", metadata={}), id="metadata-dict"),  # type: ignore[arg-type]
            pytest.param(new_event(metadata=Metadata(actor=5)), id="metadata-actor-int"),  # type: ignore[arg-type]
            pytest.param(new_event(metadata=Metadata(extra={"n": 1})), id="metadata-extra-int"),  # type: ignore[dict-item]
            pytest.param(new_event(metadata=Metadata(extra={1: "n"})), id="metadata-extra-key"),  # type: ignore[dict-item]
        ],
    )
    @pytest.mark.asyncio
    async def test_append_rejects_event_with_a_field_of_the_wrong_type(
        self, seeded: EventStore, event: NewEvent
    ) -> None:
        # Stored as given, such a field would make every later read of the stream fail.
        await assert_rejected(
            seeded, InvalidAppend, writes={A: [new_event(), event]}, expected={A: 1}
        )

        assert len(await seeded.read_stream(A)) == 1

    @pytest.mark.asyncio
    async def test_payload_at_the_configured_limit_is_accepted(self, make_store: MakeStore) -> None:
        store = await make_store(max_payload_bytes=10)

        data = b'"%s"' % (b"x" * 8)
        await store.append({A: [new_event(data=data)]}, expected={A: 0})

        assert [event.data for event in await store.read_stream(A)] == [data]

    @pytest.mark.asyncio
    async def test_payload_over_the_configured_limit_is_too_large(
        self, make_store: MakeStore
    ) -> None:
        store = await make_store(max_payload_bytes=10)
        await store.append({A: [new_event(data=b'"ok"')]}, expected={A: 0})

        error = await assert_rejected(
            store,
            PayloadTooLarge,
            writes={A: [new_event(data=b"1")], B: [new_event("Big", data=b"[%s]" % (b"1" * 9))]},
            expected={A: 1, B: 0},
        )

        assert isinstance(error, PayloadTooLarge)
        assert (error.event_type, error.size, error.limit) == ("Big", 11, 10)

    @pytest.mark.asyncio
    async def test_payload_over_the_default_limit_is_too_large(self, seeded: EventStore) -> None:
        data = b"x" * (DEFAULT_MAX_PAYLOAD_BYTES + 1)

        await assert_rejected(
            seeded, PayloadTooLarge, writes={A: [new_event(data=data)]}, expected={A: 1}
        )

    @pytest.mark.parametrize(
        ("data", "words"),
        [
            pytest.param(b"", "not valid JSON", id="empty"),
            pytest.param(b"plain text", "not valid JSON", id="text"),
            pytest.param(bytes(range(256)), "not valid JSON", id="all-bytes"),
            pytest.param(b'{"a":1} trailing', "not valid JSON", id="trailing"),
            pytest.param(b'{"a":NaN}', "not valid JSON", id="nan"),
            pytest.param(b'"\x00"', "not valid JSON", id="raw-nul-in-string"),
            pytest.param(b'{"name":"\xff"}', "not valid UTF-8", id="invalid-utf8"),
            pytest.param(b'"\xed\xa0\x80"', "not valid UTF-8", id="utf8-surrogate"),
            pytest.param(_nested(MAX_PAYLOAD_DEPTH + 1), "deeper than", id="too-deep"),
            pytest.param(_nested(1000), "deeper than", id="a-thousand-deep"),
            pytest.param(b"[" + b"[]," * 99 + b"[]", "brackets do not match", id="unclosed"),
            pytest.param(b"1" * (MAX_NUMBER_DIGITS + 1), "digits", id="long-number"),
        ],
    )
    @pytest.mark.asyncio
    async def test_append_rejects_a_payload_that_is_not_json_every_reader_can_read(
        self, seeded: EventStore, data: bytes, words: str
    ) -> None:
        # The relay would publish it verbatim as the envelope's data, where no reader could
        # read it (or, nested a thousand deep, a reader would crash on it).
        error = await assert_rejected(
            seeded,
            InvalidPayload,
            writes={A: [new_event(), new_event("Odd", data=data)]},
            expected={A: 1},
        )

        assert isinstance(error, InvalidPayload)
        assert error.event_type == "Odd"
        assert words in error.reason
        assert "'Odd'" in str(error)

    @pytest.mark.parametrize(
        "data",
        [
            pytest.param(b"null", id="null"),
            pytest.param(b"-1.5e3", id="number"),
            pytest.param(b' \n{"b": [1, {"c": null}], "a": "z"}\t', id="spacing-kept"),
            pytest.param('{"name":"naïve ✓ 🎉","esc":"\\u0000\\"\\\\"}'.encode(), id="unicode"),
            pytest.param(_nested(MAX_PAYLOAD_DEPTH), id="deepest-allowed"),
            pytest.param(b'"%s"' % (b"[" * 1000), id="brackets-in-a-string"),
            pytest.param(b'"%s"' % (b"7" * (MAX_NUMBER_DIGITS + 1)), id="digits-in-a-string"),
            pytest.param(b"[%s]" % b",".join([b"{}"] * 1000), id="wide"),
        ],
    )
    @pytest.mark.asyncio
    async def test_append_keeps_any_json_payload_byte_for_byte(
        self, seeded: EventStore, data: bytes
    ) -> None:
        await seeded.append({A: [new_event(data=data)]}, expected={A: 1})

        assert (await seeded.read_stream(A))[-1].data == data
