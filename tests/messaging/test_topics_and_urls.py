"""What a service says about its messaging: topic maps, names and bus URLs are checked
where they are given, with errors that say what is wrong."""

from __future__ import annotations

from typing import cast

import pytest

from eventcore import Event
from eventcore.errors import InvalidInput, InvalidName, InvalidUrl
from eventcore.messaging.bus import DEFAULT_PARTITIONS, Bus, bus_kind, partition_of
from eventcore.messaging.names import check_name
from eventcore.messaging.topics import TopicMap
from eventcore.messaging.url import BusUrl


class UserRegistered(Event):
    user_id: str


class Renamed(Event):
    __event_type__ = "UserRenamed"
    name: str


def test_a_topic_map_routes_names_and_classes_and_nothing_else() -> None:
    topics = TopicMap({UserRegistered: "user-events"}).route("user-events", Renamed)
    topics.route("audit", "LoginFailed")

    assert topics.topic_for("UserRegistered") == "user-events"
    assert topics.topic_for("UserRenamed") == "user-events"
    assert topics.topic_for("LoginFailed") == "audit"
    assert topics.topic_for("PasswordChanged") is None
    assert topics.topics == {"user-events", "audit"}
    assert topics.types_of("user-events") == {"UserRegistered", "UserRenamed"}
    assert len(topics) == 3


def test_a_type_cannot_go_to_two_topics() -> None:
    topics = TopicMap({"UserRegistered": "user-events"})

    with pytest.raises(InvalidInput, match="already goes to topic 'user-events'"):
        topics.route("audit", "UserRegistered")
    assert topics.topic_for("UserRegistered") == "user-events"
    topics.route("user-events", "UserRegistered")  # saying it again is fine


@pytest.mark.parametrize("bad", ["", "user events", "user.events", "a" * 65, "ü", None, 3])
def test_a_bad_topic_name_is_refused(bad: object) -> None:
    with pytest.raises(InvalidName, match="invalid topic"):
        TopicMap({"UserRegistered": bad})  # type: ignore[dict-item]


@pytest.mark.parametrize("bad", ["", 42, object()])
def test_a_bad_event_type_is_refused(bad: object) -> None:
    with pytest.raises(InvalidInput):
        TopicMap().route("user-events", bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("good", ["payments", "user-events", "Orders_v2", "a" * 64, "0"])
def test_names_of_letters_digits_dash_and_underscore_pass(good: str) -> None:
    assert check_name("group", good) == good


def test_a_name_error_says_what_kind_of_name_and_why() -> None:
    with pytest.raises(InvalidName) as raised:
        check_name("consumer group", "billing.v2")

    assert raised.value.kind == "consumer group"
    assert "only letters, digits" in str(raised.value)


def test_partitions_are_stable_and_spread() -> None:
    keys = [f"account-{n}" for n in range(2000)]
    first = [partition_of(key, 8) for key in keys]

    assert first == [partition_of(key, 8) for key in keys]
    counts = [first.count(partition) for partition in range(8)]
    assert min(counts) > 150  # CRC-32 spreads keys: no partition starves


@pytest.mark.parametrize(
    ("url", "backend", "location", "partitions"),
    [
        ("memory://", "memory", "", DEFAULT_PARTITIONS),
        ("sqlite:///tmp/bus.db", "sqlite", "/tmp/bus.db", DEFAULT_PARTITIONS),
        ("sqlite://rel/bus.db?partitions=4", "sqlite", "rel/bus.db", 4),
        ("nats://127.0.0.1:4222", "nats", "127.0.0.1:4222", DEFAULT_PARTITIONS),
        ("nats://nats.internal?partitions=16", "nats", "nats.internal:4222", 16),
    ],
)
def test_bus_urls_parse(url: str, backend: str, location: str, partitions: int) -> None:
    parsed = BusUrl.parse(url)

    assert (parsed.backend, parsed.location, parsed.partitions) == (backend, location, partitions)


def test_a_nats_namespace_defaults_to_eventcore() -> None:
    assert BusUrl.parse("nats://127.0.0.1:4222").namespace == "eventcore"
    assert BusUrl.parse("nats://127.0.0.1:4222?namespace=shop_test").namespace == "shop_test"


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("localhost:4222", "expected scheme"),
        ("kafka://broker:9092", "unknown bus scheme"),
        ("memory://somewhere", "takes no path"),
        ("sqlite://", "no file path"),
        ("nats://:4222", "no host"),
        ("nats://host:port", "malformed host or port"),
        ("sqlite:///tmp/bus.db?partitions=0", "partitions must be"),
        ("sqlite:///tmp/bus.db?partitions=many", "partitions must be"),
        ("sqlite:///tmp/bus.db?partitions=1000", "partitions must be"),
        ("sqlite:///tmp/bus.db?colour=blue", "unknown option"),
        ("sqlite:///tmp/bus.db?namespace=x", "only nats:// takes a namespace"),
        ("nats://127.0.0.1?namespace=a.b", "only letters"),
    ],
)
def test_a_bad_bus_url_is_a_typed_error_that_says_why(url: str, reason: str) -> None:
    with pytest.raises(InvalidUrl, match=reason):
        BusUrl.parse(url)


class _Shown:
    def __init__(self, url: str) -> None:
        self.url = url


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("memory://", "memory"),
        ("sqlite:///tmp/bus.db", "sqlite"),
        ("nats://***@127.0.0.1:4222", "nats"),
        ("tls://alice:***@nats.internal:4443?namespace=x", "nats"),
        ("TLS://nats.internal", "nats"),
    ],
)
def test_the_kind_of_a_bus_is_its_backend_whatever_the_scheme(url: str, kind: str) -> None:
    # What metrics label a bus by: a bus that requires TLS is still a NATS bus.
    assert bus_kind(cast(Bus, _Shown(url))) == kind
