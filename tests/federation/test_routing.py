"""Routing one event through the rules: order, several matches, stop, ids, what passes
through, and a failure kept to its own rule."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eventcore.federation import Origin, RuleTarget, route, routed_id
from eventcore.federation.routing import ROUTED_ID_NAMESPACE
from eventcore.messaging.envelope import decode_envelope, encode_envelope
from tests.federation.samples import config, data_of, envelope, rule

FROM_USERS = Origin("main", "users")


def test_rules_are_tried_in_order_and_every_match_makes_a_copy() -> None:
    rules = config(
        rule("second-in-file", type="User*", targets='[{ bus = "edge", topic = "a" }]'),
        rule("never", type="Order*", targets='[{ bus = "edge", topic = "b" }]'),
        rule("third-in-file", type="**", targets='[{ bus = "edge", topic = "c" }]'),
    ).rules

    routing = route(envelope("UserRegistered"), FROM_USERS, rules)

    assert routing.matched == ("second-in-file", "third-in-file")
    assert [copy.rule for copy in routing.routed] == ["second-in-file", "third-in-file"]
    assert routing.routed[1].targets == (RuleTarget("edge", "c"),)
    assert routing.stopped_by is None


def test_a_matching_rule_with_stop_ends_the_evaluation() -> None:
    rules = config(
        rule("first", type="User*", extra="stop = true"),
        rule("after-stop", type="**"),
    ).rules

    routing = route(envelope("UserRegistered"), FROM_USERS, rules)

    assert routing.matched == ("first",)
    assert routing.stopped_by == "first"


def test_a_rule_with_stop_that_does_not_match_stops_nothing() -> None:
    rules = config(rule("stopper", type="Order*", extra="stop = true"), rule("next")).rules

    routing = route(envelope("UserRegistered"), FROM_USERS, rules)

    assert routing.matched == ("next",)
    assert routing.stopped_by is None


@pytest.mark.parametrize(
    ("origin", "source", "matched"),
    [
        (Origin("main", "users"), "users", True),
        (Origin("main", "orders"), "users", False),
        (Origin("edge", "users"), "users", False),
        (Origin("main", "users"), "admin", False),
    ],
)
def test_a_rule_takes_only_its_source_topic_and_service(
    origin: Origin, source: str, matched: bool
) -> None:
    rules = config(
        '[[rules]]\nname = "r"\nsource = { bus = "main", topic = "users", service = "users" }\n'
        'type = "**"\ntargets = [{ bus = "edge", topic = "billing" }]\n'
    ).rules

    routing = route(envelope(source=source), origin, rules)

    assert bool(routing.routed) is matched


def test_a_copy_id_is_derived_from_the_rule_and_the_original_id_alone() -> None:
    rules = config(rule("a"), rule("b")).rules
    first = route(envelope(id="event-1"), FROM_USERS, rules)
    again = route(envelope(id="event-1", publishedat="later"), FROM_USERS, rules)
    other = route(envelope(id="event-2"), FROM_USERS, rules)

    ids = [copy.envelope.id for copy in first.routed]
    assert ids == [copy.envelope.id for copy in again.routed]
    assert ids == [routed_id("a", "event-1"), routed_id("b", "event-1")]
    assert len(set(ids) | {copy.envelope.id for copy in other.routed}) == 4
    assert all(uuid.UUID(each).version == 5 for each in ids)
    # A UUIDv5 anyone can recompute from the rule and the original id.
    assert ids[0] == str(uuid.uuid5(ROUTED_ID_NAMESPACE, "a\nevent-1"))


def test_correlation_causation_and_trace_context_pass_through() -> None:
    original = envelope(
        correlationid="corr-1",
        causationid="cause-1",
        traceparent="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        tracestate="vendor=1",
    )
    rules = config(rule("r", extra='transforms = [{ op = "rename-type", to = "X" }]')).rules

    copy = route(original, FROM_USERS, rules).routed[0].envelope

    for name in ("correlationid", "causationid", "traceparent", "tracestate"):
        assert getattr(copy, name) == getattr(original, name)
    assert (copy.subject, copy.streamversion, copy.time) == (
        original.subject,
        original.streamversion,
        original.time,
    )


def test_a_copy_says_which_rule_made_it_and_where_it_came_from() -> None:
    rules = config(
        rule(
            "users-to-billing",
            extra='transforms = [{ op = "rename-type", to = "CustomerCreated" },'
            ' { op = "set-source", to = "billing-gateway" }]',
        )
    ).rules

    copy = route(envelope(id="event-9"), FROM_USERS, rules).routed[0].envelope

    assert (copy.type, copy.source) == ("CustomerCreated", "billing-gateway")
    assert copy.federationrule == "users-to-billing"
    assert copy.federationid == "event-9"
    assert copy.federationsource == "users"
    assert copy.federationtype == "UserRegistered"
    assert copy.federationorigin == "main/users"
    # ...and survives the wire as any subscriber reads it.
    assert decode_envelope(encode_envelope(copy)) == copy


def test_a_rule_without_payload_steps_passes_the_payload_bytes_untouched() -> None:
    original = envelope(data={"b": 1.50, "a": [1, 2]})
    rules = config(rule("r", extra='transforms = [{ op = "rename-type", to = "X" }]')).rules

    copy = route(original, FROM_USERS, rules).routed[0].envelope

    assert copy.payload == original.payload


def test_a_failed_transformation_fails_its_rule_alone() -> None:
    rules = config(
        rule("breaks", extra='transforms = [{ op = "mask", fields = ["profile.card"] }]'),
        rule("fine", extra='transforms = [{ op = "drop", fields = ["email"] }]'),
    ).rules

    routing = route(envelope(data={"profile": ["not", "an", "object"]}), FROM_USERS, rules)

    assert routing.matched == ("breaks", "fine")
    assert [copy.rule for copy in routing.routed] == ["fine"]
    (failure,) = routing.failed
    assert failure.rule == "breaks"
    assert failure.step.startswith("transforms[0] (mask")
    assert "'profile' is a list, not an object" in failure.reason


def test_one_rules_edits_never_reach_another_rules_copy() -> None:
    rules = config(
        rule("drops", extra='transforms = [{ op = "drop", fields = ["email"] }]'),
        rule("keeps", extra='transforms = [{ op = "keep", fields = ["email"] }]'),
    ).rules

    drops, keeps = route(envelope(), FROM_USERS, rules).routed

    assert data_of(drops.envelope) == {"name": "Ada"}
    assert data_of(keeps.envelope) == {"email": "ada@example.com"}


def test_without_an_origin_each_rule_is_taken_to_read_at_its_own_source() -> None:
    rules = config(rule("from-users"), rule("from-orders", topic="orders")).rules

    routing = route(envelope(), None, rules)

    assert routing.matched == ("from-users", "from-orders")
    assert [copy.envelope.federationorigin for copy in routing.routed] == [
        "main/users",
        "main/orders",
    ]


def test_who_acted_and_free_form_metadata_stay_in_the_source_domain() -> None:
    original = envelope(data={"n": 1}, actor="ada@example.com", metaextra='{"ip": "192.0.2.7"}')

    copy = route(original, FROM_USERS, config(rule("r")).rules).routed[0].envelope

    assert (copy.actor, copy.metaextra) == (None, None)
    assert b"ada@example.com" not in encode_envelope(copy)
    assert b"192.0.2.7" not in encode_envelope(copy)


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda kids: (
        st.lists(kids, max_size=3)
        | st.dictionaries(st.sampled_from(["a", "b", "c", "d"]), kids, max_size=3)
    ),
    max_leaves=10,
)
EVERY_STEP = config(
    rule(
        "all-steps",
        extra="transforms = ["
        '{ op = "rename", from = "a.b", to = "d.e" },'
        '{ op = "hash", fields = ["a.c"], key_env = "HUB_KEY" },'
        '{ op = "mask", fields = ["b"] },'
        '{ op = "redact", fields = ["c.a"] },'
        '{ op = "tokenize", fields = ["d.a"], key_env = "HUB_KEY" },'
        '{ op = "drop", fields = ["c.b"] },'
        '{ op = "keep", fields = ["a", "b", "c", "d"] },'
        '{ op = "rename-type", to = "Routed" }]',
    ),
    rule("untouched"),
).rules


@settings(max_examples=300, deadline=None)
@given(payload=JSON)
def test_any_payload_is_routed_or_failed_and_every_copy_is_a_valid_envelope(
    payload: object,
) -> None:
    routing = route(envelope(data=payload), FROM_USERS, EVERY_STEP)

    assert routing.matched == ("all-steps", "untouched")
    assert len(routing.routed) + len(routing.failed) == 2
    for copy in routing.routed:
        assert decode_envelope(encode_envelope(copy.envelope)) == copy.envelope
