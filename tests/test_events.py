"""Events: type names, the registry, the JSON codec and upcasters."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

import pytest

from eventcore.errors import DecodeError, InvalidInput, UnknownEventType
from eventcore.events import Event, EventRegistry
from eventcore.types import Metadata, StoredEvent, StreamId, new_event_id


class Deposited(Event):
    amount: int


class Renamed(Event):
    __event_type__: ClassVar[str] = "account.renamed"
    name: str


class Subscribed(Event):
    """Version 3: v1 had ``plan``, v2 renamed it ``tier``, v3 added ``seats``."""

    __event_version__: ClassVar[int] = 3
    tier: str
    seats: int


def stored(name: str, data: bytes, schema_version: int = 1) -> StoredEvent:
    return StoredEvent(
        position=1,
        stream_id=StreamId("s"),
        version=1,
        event_id=new_event_id(),
        type=name,
        schema_version=schema_version,
        data=data,
        metadata=Metadata(),
        recorded_at=datetime.now(UTC),
    )


@pytest.fixture
def registry() -> EventRegistry:
    registry = EventRegistry([Deposited, Renamed, Subscribed])

    @registry.upcaster("Subscribed", 1)
    def plan_to_tier(payload: dict[str, Any]) -> dict[str, Any]:
        return {"tier": payload.pop("plan"), **payload}

    @registry.upcaster("Subscribed", 2)
    def add_seats(payload: dict[str, Any]) -> dict[str, Any]:
        return {**payload, "seats": 1}

    return registry


# --- type names ----------------------------------------------------------------------------


def test_event_type_defaults_to_the_class_name() -> None:
    assert Deposited.__event_type__ == "Deposited"


def test_event_type_can_be_overridden() -> None:
    assert Renamed.__event_type__ == "account.renamed"


def test_subclass_of_an_event_gets_its_own_default_name() -> None:
    class LargeDeposit(Deposited):
        pass

    assert LargeDeposit.__event_type__ == "LargeDeposit"


def test_schema_version_defaults_to_one() -> None:
    assert Deposited.__event_version__ == 1
    assert Subscribed.__event_version__ == 3


@pytest.mark.parametrize("version", [0, -1, "2"], ids=["zero", "negative", "str"])
def test_event_class_with_invalid_schema_version_is_rejected(version: Any) -> None:
    with pytest.raises(InvalidInput, match="__event_version__"):

        class Broken(Event):
            __event_version__: ClassVar[int] = version


def test_events_are_frozen() -> None:
    event = Deposited(amount=1)

    with pytest.raises(AttributeError):
        event.amount = 2  # type: ignore[misc]


# --- the registry --------------------------------------------------------------------------


def test_registry_knows_registered_types_by_name(registry: EventRegistry) -> None:
    assert "Deposited" in registry
    assert "account.renamed" in registry
    assert "Renamed" not in registry
    assert registry.type_of("account.renamed") is Renamed
    assert set(registry) == {Deposited, Renamed, Subscribed}


def test_register_works_as_a_class_decorator() -> None:
    registry = EventRegistry()

    @registry.register
    class Opened(Event):
        owner: str

    assert registry.type_of("Opened") is Opened


def test_registering_the_same_class_twice_is_harmless(registry: EventRegistry) -> None:
    assert registry.register(Deposited) is Deposited


def test_registering_another_class_under_a_taken_name_is_rejected(
    registry: EventRegistry,
) -> None:
    class Impostor(Event):
        __event_type__: ClassVar[str] = "Deposited"
        amount: int

    with pytest.raises(InvalidInput, match="'Deposited' is already registered to Deposited"):
        registry.register(Impostor)
    assert registry.type_of("Deposited") is Deposited


@pytest.mark.parametrize("thing", [int, Deposited(amount=1), "Deposited"], ids=repr)
def test_registering_something_that_is_not_an_event_class_is_rejected(thing: Any) -> None:
    with pytest.raises(InvalidInput, match="not a subclass of Event"):
        EventRegistry().register(thing)


def test_type_of_an_unknown_name_is_unknown_event_type(registry: EventRegistry) -> None:
    with pytest.raises(UnknownEventType) as caught:
        registry.type_of("Withdrawn")

    assert caught.value.event_type == "Withdrawn"
    assert isinstance(caught.value, DecodeError)


def test_second_upcaster_for_the_same_version_is_rejected(registry: EventRegistry) -> None:
    with pytest.raises(InvalidInput, match="already registered"):
        registry.upcaster("Subscribed", 1)(lambda payload: payload)


# --- codec ---------------------------------------------------------------------------------


def test_encode_then_decode_round_trips(registry: EventRegistry) -> None:
    event = Renamed(name="naïve ✓")

    encoded = registry.encode(event)

    assert (encoded.type, encoded.schema_version) == ("account.renamed", 1)
    assert registry.decode(stored(encoded.type, encoded.data)) == event


def test_encode_carries_metadata_and_event_id(registry: EventRegistry) -> None:
    event_id = new_event_id()
    metadata = Metadata(correlation_id="c1")

    encoded = registry.encode(Deposited(amount=5), metadata=metadata, event_id=event_id)

    assert (encoded.event_id, encoded.metadata) == (event_id, metadata)


def test_encode_gives_each_event_a_fresh_id(registry: EventRegistry) -> None:
    assert (
        registry.encode(Deposited(amount=1)).event_id
        != registry.encode(Deposited(amount=1)).event_id
    )


def test_encode_uses_the_current_schema_version(registry: EventRegistry) -> None:
    assert registry.encode(Subscribed(tier="pro", seats=2)).schema_version == 3


def test_encode_of_an_unregistered_class_is_unknown_event_type(registry: EventRegistry) -> None:
    class Stray(Event):
        pass

    with pytest.raises(UnknownEventType):
        registry.encode(Stray())


def test_decode_of_an_unknown_type_is_unknown_event_type(registry: EventRegistry) -> None:
    with pytest.raises(UnknownEventType) as caught:
        registry.decode(stored("Withdrawn", b'{"amount":1}'))

    assert caught.value.event_type == "Withdrawn"


@pytest.mark.parametrize(
    "data",
    [b"not json", b'{"amount":', b"", b"\xff\xfe"],
    ids=["text", "truncated", "empty", "not-utf8"],
)
def test_decode_of_invalid_json_is_decode_error(registry: EventRegistry, data: bytes) -> None:
    with pytest.raises(DecodeError, match="'Deposited'"):
        registry.decode(stored("Deposited", data))


@pytest.mark.parametrize(
    "data",
    [b"[1]", b'{"amount":"one"}', b"{}", b"42"],
    ids=["array", "wrong-field-type", "missing-field", "number"],
)
def test_decode_of_the_wrong_shape_is_decode_error(registry: EventRegistry, data: bytes) -> None:
    with pytest.raises(DecodeError, match="does not match its class"):
        registry.decode(stored("Deposited", data))


# --- upcasters -----------------------------------------------------------------------------


def test_upcasters_chain_from_v1_to_the_current_version(registry: EventRegistry) -> None:
    event = registry.decode(stored("Subscribed", b'{"plan":"pro"}', schema_version=1))

    assert event == Subscribed(tier="pro", seats=1)


def test_upcasting_starts_from_the_stored_version(registry: EventRegistry) -> None:
    event = registry.decode(stored("Subscribed", b'{"tier":"team"}', schema_version=2))

    assert event == Subscribed(tier="team", seats=1)


def test_current_version_is_decoded_without_upcasting(registry: EventRegistry) -> None:
    data = b'{"tier":"team","seats":5}'

    assert registry.decode(stored("Subscribed", data, 3)) == Subscribed(tier="team", seats=5)


def test_missing_upcaster_is_decode_error_naming_the_gap() -> None:
    registry = EventRegistry([Subscribed])

    @registry.upcaster("Subscribed", 1)
    def plan_to_tier(payload: dict[str, Any]) -> dict[str, Any]:
        return {"tier": payload["plan"]}

    with pytest.raises(DecodeError, match="no upcaster for 'Subscribed' from schema version 2"):
        registry.decode(stored("Subscribed", b'{"plan":"pro"}', schema_version=1))


def test_payload_newer_than_the_reader_is_decode_error(registry: EventRegistry) -> None:
    with pytest.raises(DecodeError, match="newer than this reader's version 3"):
        registry.decode(stored("Subscribed", b'{"tier":"x","seats":1}', schema_version=4))


@pytest.mark.parametrize("data", [b"not json", b"[1, 2]"], ids=["invalid-json", "not-an-object"])
def test_old_payload_that_cannot_be_read_is_decode_error(
    registry: EventRegistry, data: bytes
) -> None:
    with pytest.raises(DecodeError):
        registry.decode(stored("Subscribed", data, schema_version=1))


def test_upcaster_that_raises_is_decode_error_with_its_cause() -> None:
    registry = EventRegistry([Subscribed])

    @registry.upcaster("Subscribed", 1)
    def needs_plan(payload: dict[str, Any]) -> dict[str, Any]:
        return {"tier": payload["plan"]}

    failing = "upcaster of 'Subscribed' from schema version 1"
    with pytest.raises(DecodeError, match=failing) as caught:
        registry.decode(stored("Subscribed", b'{"other":"x"}', schema_version=1))
    assert isinstance(caught.value.__cause__, KeyError)


def test_upcaster_returning_a_non_dict_is_decode_error() -> None:
    registry = EventRegistry([Subscribed])
    registry.upcaster("Subscribed", 1)(lambda payload: [payload])  # type: ignore[arg-type,return-value]

    with pytest.raises(DecodeError, match="not a dict"):
        registry.decode(stored("Subscribed", b'{"plan":"pro"}', schema_version=1))


def test_upcast_payload_that_does_not_fit_the_class_is_decode_error() -> None:
    registry = EventRegistry([Subscribed])
    registry.upcaster("Subscribed", 1)(lambda payload: payload)
    registry.upcaster("Subscribed", 2)(lambda payload: payload)

    with pytest.raises(DecodeError, match="does not match its class"):
        registry.decode(stored("Subscribed", b'{"plan":"pro"}', schema_version=1))


class Shipped(Event):
    order: StreamId


def test_stream_id_fields_round_trip_as_stream_ids() -> None:
    registry = EventRegistry([Shipped])
    encoded = registry.encode(Shipped(order=StreamId("order-7")))
    assert encoded.data == b'{"order":"order-7"}'
    decoded = registry.decode_payload("Shipped", 1, encoded.data)
    assert isinstance(decoded, Shipped)
    assert type(decoded.order) is StreamId


def test_an_invalid_stream_id_field_is_decode_error() -> None:
    registry = EventRegistry([Shipped])
    with pytest.raises(DecodeError, match="invalid stream id"):
        registry.decode_payload("Shipped", 1, b'{"order":"  "}')
