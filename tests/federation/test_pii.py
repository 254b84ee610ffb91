"""Personal data never crosses: hash is keyed and stable, tokens reveal only under their
key, and for any payload no protected value reaches the routed bytes."""

from __future__ import annotations

import string
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eventcore.errors import InvalidInput
from eventcore.federation import (
    Origin,
    Rule,
    RuleSource,
    RuleTarget,
    Tokenizer,
    TypePattern,
    hash_value,
)
from eventcore.federation import route as route_event
from eventcore.federation.fields import FieldPath
from eventcore.federation.transforms import Drop, Hash, Mask, Redact, Step, Tokenize
from eventcore.messaging.envelope import encode_envelope
from tests.federation.samples import KEY, OTHER_KEY, envelope

SECRET = KEY.encode()
OTHER = OTHER_KEY.encode()


@pytest.mark.parametrize("value", ["ada@example.com", 42, {"b": 1, "a": [2]}, None])
def test_a_hash_is_stable_and_changes_with_the_key(value: Any) -> None:
    assert hash_value(value, SECRET) == hash_value(value, SECRET)
    assert hash_value(value, SECRET) != hash_value(value, OTHER)
    assert len(hash_value(value, SECRET)) == 64


def test_a_hash_tells_text_from_a_number_and_ignores_key_order() -> None:
    assert hash_value("1", SECRET) != hash_value(1, SECRET)
    assert hash_value({"a": 1, "b": 2}, SECRET) == hash_value({"b": 2, "a": 1}, SECRET)


@pytest.mark.parametrize(
    "value", ["ada@example.com", "", 4111111111111111, {"street": ["Main", 1]}]
)
def test_a_token_reveals_its_value_under_its_key_only(value: Any) -> None:
    token = Tokenizer(SECRET).tokenize(value)

    assert Tokenizer(SECRET).reveal(token) == value
    assert Tokenizer(SECRET).tokenize(value) == token  # deterministic: joins still work
    with pytest.raises(InvalidInput, match="not a token of this key"):
        Tokenizer(OTHER).reveal(token)


@pytest.mark.parametrize(
    "bad",
    ["ada@example.com", "tok_", "tok_!!!!", "tok_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"],
)
def test_what_is_not_a_token_is_refused(bad: str) -> None:
    with pytest.raises(InvalidInput):
        Tokenizer(SECRET).reveal(bad)


def test_an_altered_token_is_refused() -> None:
    token = Tokenizer(SECRET).tokenize("ada@example.com")
    flipped = token[:-1] + ("A" if token[-1] != "A" else "B")

    with pytest.raises(InvalidInput):
        Tokenizer(SECRET).reveal(flipped)


def test_a_short_secret_is_refused() -> None:
    with pytest.raises(InvalidInput, match="at least 32 bytes"):
        Tokenizer(b"short")


# --- no protected value reaches the routed bytes ---------------------------------------

#: Every protected value starts with it, and no other part of a payload holds it.
MARK = "\N{UMBRELLA}"
KEYS = st.text(alphabet="abcdefghij", min_size=1, max_size=3)
LEAVES = st.one_of(
    st.integers(-(2**53), 2**53),
    st.booleans(),
    st.none(),
    st.text(alphabet=string.printable, max_size=12),
    st.lists(st.integers(0, 9), max_size=3),
)
TREES = st.recursive(LEAVES, lambda kids: st.dictionaries(KEYS, kids, min_size=1, max_size=4))
PAYLOADS = st.dictionaries(KEYS, TREES, min_size=1, max_size=5)
PROTECTED = st.text(min_size=7, max_size=20).map(lambda text: MARK + text)
OPS = ["hash", "redact", "mask", "drop", "tokenize"]


def leaf_paths(tree: dict[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found: list[tuple[str, ...]] = []
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            found += leaf_paths(value, (*prefix, key))
        else:
            found.append((*prefix, key))
    return found


def set_at(tree: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for key in path[:-1]:
        tree = tree[key]
    tree[path[-1]] = value


def step(op: str, paths: tuple[FieldPath, ...]) -> Step:
    if op == "hash":
        return Hash(paths, SECRET, "HUB_KEY")
    if op == "redact":
        return Redact(paths, "[redacted]")
    if op == "mask":
        return Mask(paths, 4, "*")
    if op == "drop":
        return Drop(paths)
    return Tokenize(paths, Tokenizer(SECRET), "HUB_KEY")


@settings(max_examples=200, deadline=None)
@given(payload=PAYLOADS, data=st.data())
def test_no_protected_value_appears_anywhere_in_the_routed_bytes(
    payload: dict[str, Any], data: st.DataObject
) -> None:
    paths = leaf_paths(payload)
    chosen = data.draw(st.lists(st.sampled_from(paths), min_size=1, unique=True), label="paths")
    secrets: list[str] = []
    by_op: dict[str, list[FieldPath]] = {}
    for path in chosen:
        value = data.draw(PROTECTED, label=".".join(path))
        set_at(payload, path, value)
        secrets.append(value)
        by_op.setdefault(data.draw(st.sampled_from(OPS)), []).append(FieldPath(".".join(path)))
    rule = Rule(
        "protect",
        RuleSource("main", "users"),
        TypePattern("**"),
        (RuleTarget("edge", "analytics"),),
        tuple(step(op, tuple(fields)) for op, fields in by_op.items()),
    )

    routing = route_event(envelope(data=payload), Origin("main", "users"), [rule])

    assert routing.failed == ()
    body = encode_envelope(routing.routed[0].envelope)
    assert MARK.encode() not in body
    for secret in secrets:
        assert secret.encode() not in body
