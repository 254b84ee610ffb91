"""Event-type patterns: ``*`` one segment (or a glob inside one), ``**`` any number of
segments including none, everything else literal."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eventcore.errors import InvalidInput
from eventcore.federation import TypePattern

TABLE = [
    # (pattern, type, matches)
    ("user.*", "user.created", True),
    ("user.*", "user.deleted", True),
    ("user.*", "user", False),
    ("user.*", "user.address.changed", False),
    ("user.*", "users.created", False),
    ("*.created", "order.created", True),
    ("*.created", "created", False),
    ("*.created", "a.b.created", False),
    ("orders.**", "orders", True),
    ("orders.**", "orders.created", True),
    ("orders.**", "orders.line.added", True),
    ("orders.**", "ordersx.created", False),
    ("orders.**", "shop.orders.created", False),
    ("**.created", "created", True),
    ("**.created", "shop.order.created", True),
    ("**.created", "shop.order.created.late", False),
    ("a.**.b", "a.b", True),
    ("a.**.b", "a.x.y.b", True),
    ("a.**.b", "a.x.y", False),
    ("**", "anything.at.all", True),
    ("**", "UserRegistered", True),
    ("UserRegistered", "UserRegistered", True),
    ("UserRegistered", "UserRegistered2", False),
    ("UserRegistered", "userregistered", False),
    ("User*", "UserRegistered", True),
    ("User*", "User", True),
    ("User*", "AdminUserRegistered", False),
    ("*Registered", "UserRegistered", True),
    ("order.*ed", "order.shipped", True),
    ("order.*ed", "order.shipping", False),
    ("*", "UserRegistered", True),
    ("*", "user.created", False),
    # Characters that mean something to regular expressions are literal.
    ("a+b.(c)", "a+b.(c)", True),
    ("a+b.(c)", "aab.c", False),
    ("user.?", "user.x", False),
]


@pytest.mark.parametrize(("pattern", "event_type", "expected"), TABLE)
def test_a_pattern_matches_the_types_the_table_says(
    pattern: str, event_type: str, expected: bool
) -> None:
    assert TypePattern(pattern).matches(event_type) is expected


@pytest.mark.parametrize("pattern", ["", "  ", " user.*", "orders**", "a.**b", "a.***"])
def test_a_pattern_that_cannot_mean_anything_is_refused(pattern: str) -> None:
    with pytest.raises(InvalidInput):
        TypePattern(pattern)


# --- against a reference written another way: segment by segment, recursively ---------


def glob_segment(pattern: str, text: str) -> bool:
    """``*`` in a segment: any run of characters (the text holds no dot here)."""
    if not pattern:
        return not text
    if pattern[0] == "*":
        return any(glob_segment(pattern[1:], text[cut:]) for cut in range(len(text) + 1))
    return bool(text) and text[0] == pattern[0] and glob_segment(pattern[1:], text[1:])


def reference(pattern: list[str], segments: list[str]) -> bool:
    if not pattern:
        return not segments
    head, rest = pattern[0], pattern[1:]
    if head == "**":
        return any(reference(rest, segments[skip:]) for skip in range(len(segments) + 1))
    return bool(segments) and glob_segment(head, segments[0]) and reference(rest, segments[1:])


SEGMENT_TEXT = st.text(alphabet="abc*", min_size=0, max_size=3)
PATTERN_SEGMENT = st.one_of(st.just("**"), SEGMENT_TEXT.filter(lambda s: "**" not in s))
TYPE = st.lists(st.text(alphabet="abc", max_size=3), min_size=1, max_size=5).map(".".join)


@settings(max_examples=400)
@given(pattern=st.lists(PATTERN_SEGMENT, min_size=1, max_size=6).map(".".join), event_type=TYPE)
def test_the_matcher_agrees_with_a_segment_by_segment_reference(
    pattern: str, event_type: str
) -> None:
    if not pattern.strip():
        return
    expected = reference(pattern.split("."), event_type.split("."))

    assert TypePattern(pattern).matches(event_type) is expected


@pytest.mark.parametrize(
    ("pattern", "event_type", "expected"),
    [
        # A backtracking regular expression takes minutes on these (time polynomial in
        # the type's length); the matcher never retries a step.
        ("*a*a*a*b", "a" * 200_000, False),
        ("*a*a*a*a", "a" * 200_000, True),
        ("**.a.**.a.**.b", "a." * 100_000 + "c", False),
        ("**.a.**.a.**.a", "a." * 100_000 + "a", True),
    ],
    ids=["glob-miss", "glob-hit", "segments-miss", "segments-hit"],
)
def test_a_long_hostile_type_is_matched_in_one_pass(
    pattern: str, event_type: str, expected: bool
) -> None:
    assert TypePattern(pattern).matches(event_type) is expected
