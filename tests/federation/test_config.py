"""The hub's configuration: loaded whole or refused whole, every problem named by file,
rule and field."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eventcore.errors import ConfigProblem, InvalidConfig
from eventcore.federation import Origin, RuleSource, RuleTarget, load_config, parse_config
from eventcore.federation.transforms import Hash, Mask, RenameType
from tests.federation.samples import BUSES, ENVIRON, config, rule


def problems_of(text: str, environ: dict[str, str] | None = None) -> list[ConfigProblem]:
    with pytest.raises(InvalidConfig) as caught:
        parse_config(text, file="hub.toml", environ=ENVIRON if environ is None else environ)
    return list(caught.value.problems)


def test_a_good_configuration_loads_with_its_rules_in_order() -> None:
    loaded = config(
        rule(
            "users-to-billing",
            type="UserRegistered",
            extra='stop = true\ntransforms = [{ op = "rename-type", to = "CustomerCreated" },'
            ' { op = "hash", fields = ["email"], key_env = "HUB_KEY" },'
            ' { op = "mask", fields = ["card"], keep = 2, char = "#" }]',
        ),
        rule("orders", type="orders.**", topic="orders"),
    )

    first, second = loaded.rules
    assert first.name == "users-to-billing"
    assert first.source == RuleSource("main", "users")
    assert first.targets == (RuleTarget("edge", "billing"),)
    assert first.stop is True
    rename, hashed, masked = first.steps
    assert rename == RenameType("CustomerCreated")
    assert isinstance(hashed, Hash)
    assert hashed.key == ENVIRON["HUB_KEY"].encode()
    assert isinstance(masked, Mask)
    assert (masked.keep, masked.char) == (2, "#")
    assert second.stop is False
    assert loaded.origins == (Origin("main", "users"), Origin("main", "orders"))
    assert loaded.buses == {"main": "memory://", "edge": "memory://"}


def test_a_bus_url_may_come_whole_from_the_environment() -> None:
    text = '[buses]\nmain = { env = "MAIN_BUS" }\nedge = "memory://"\n' + rule("r")

    loaded = parse_config(text, environ={"MAIN_BUS": "nats://127.0.0.1:4222"})

    assert loaded.buses["main"] == "nats://127.0.0.1:4222"


def test_a_bad_url_from_the_environment_is_named_by_its_variable_not_shown() -> None:
    text = '[buses]\nmain = { env = "MAIN_BUS" }\nedge = "memory://"\n' + rule("r")

    (problem,) = problems_of(text, {"MAIN_BUS": "mysql://admin:hunter2@db/x"})

    assert problem.field == "buses.main"
    assert "$MAIN_BUS" in problem.reason
    assert "hunter2" not in str(problem)


def test_the_key_is_never_shown_in_a_step_repr() -> None:
    loaded = config(
        rule("r", extra='transforms = [{ op = "hash", fields = ["a"], key_env = "HUB_KEY" }]')
    )

    assert ENVIRON["HUB_KEY"] not in repr(loaded.rules[0].steps)


def step(fields: str) -> str:
    """A rule's ``transforms`` line with one step."""
    return f"transforms = [{{ {fields} }}]"


#: (what is wrong, the rule's extra lines, field named, reason).
BAD_STEPS = [
    ("unknown field", 'colour = "red"', "colour", "unknown field"),
    ("stop not a boolean", 'stop = "yes"', "stop", "expected a boolean, got text"),
    ("transforms not an array", 'transforms = "hash"', "transforms", "expected an array"),
    ("step not a table", "transforms = [1]", "transforms[0]", "expected a table"),
    ("step without op", step("to = 'x'"), "transforms[0].op", "missing"),
    ("unknown op", step("op = 'encrypt'"), "transforms[0].op", "unknown op"),
    ("unknown step field", step("op = 'rename-type', to = 'X', as = 'Y'"), "transforms[0].as",
     "unknown field"),
    ("empty new type", step("op = 'rename-type', to = ' '"), "transforms[0].to",
     "must not be empty"),
    ("bad new source", step("op = 'set-source', to = 'a b'"), "transforms[0].to",
     "usable service name"),
    ("no fields", step("op = 'drop', fields = []"), "transforms[0].fields", "at least one field"),
    ("field not text", step("op = 'keep', fields = [3]"), "transforms[0].fields[0]",
     "expected a dotted field path"),
    ("empty segment", step("op = 'drop', fields = ['a..b']"), "transforms[0].fields[0]",
     "empty segment"),
    ("overlapping fields", step("op = 'redact', fields = ['a', 'a.b']"),
     "transforms[0].fields[1]", "overlaps"),
    ("rename without to", step("op = 'rename', from = 'a'"), "transforms[0].to", "missing"),
    ("rename into itself", step("op = 'rename', from = 'a', to = 'a.b'"), "transforms[0].to",
     "overlaps"),
    ("hash without key", step("op = 'hash', fields = ['a']"), "transforms[0].key_env", "missing"),
    ("key variable unset", step("op = 'hash', fields = ['a'], key_env = 'NOPE'"),
     "transforms[0].key_env", "NOPE is not set"),
    ("key too short", step("op = 'tokenize', fields = ['a'], key_env = 'SHORT'"),
     "transforms[0].key_env", "at least 32 bytes"),
    ("mask keep zero", step("op = 'mask', fields = ['a'], keep = 0"), "transforms[0].keep",
     "from 1 to 64"),
    ("mask char too long", step("op = 'mask', fields = ['a'], char = '**'"), "transforms[0].char",
     "one printable character"),
    ("empty marker", step("op = 'redact', fields = ['a'], marker = ''"), "transforms[0].marker",
     "must not be empty"),
    ("function not module:name", step("op = 'function', function = 'nocolon'"),
     "transforms[0].function", "module:function"),
    ("function module missing", step("op = 'function', function = 'no_such_module_x:f'"),
     "transforms[0].function", "cannot import"),
    ("function missing", step("op = 'function', function = 'tests.federation.samples:nothing'"),
     "transforms[0].function", "has no attribute"),
    ("function not callable", step("op = 'function', function = 'tests.federation.samples:KEY'"),
     "transforms[0].function", "not a function"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("extra", "field", "reason"), [pytest.param(*case[1:], id=case[0]) for case in BAD_STEPS]
)
def test_a_bad_step_or_field_is_named_by_file_rule_and_field(
    extra: str, field: str, reason: str
) -> None:
    environ = {**ENVIRON, "SHORT": "too short"}

    (problem,) = problems_of(BUSES + rule("good") + rule("r", extra=extra), environ)

    assert (problem.file, problem.rule, problem.field) == ("hub.toml", "r", field)
    assert reason in problem.reason
    assert str(problem).startswith(f"hub.toml: rule 'r': {field}: ")


GOOD_HEAD = {
    "name": '"r"',
    "source": '{ bus = "main", topic = "t" }',
    "type": '"*"',
    "targets": '[{ bus = "edge", topic = "x" }]',
}

EDGE_X = '{ bus = "edge", topic = "x" }'
#: (what is wrong, the rule's fields changed (None: left out), rule named, field, reason).
BAD_HEADS = [
    ("no source", {"source": None}, "r", "source", "missing"),
    ("unknown source bus", {"source": '{ bus = "mars", topic = "t" }'}, "r", "source.bus",
     "no bus 'mars'"),
    ("bad source topic", {"source": '{ bus = "main", topic = "a.b" }'}, "r", "source.topic",
     "usable topic name"),
    ("bad source service", {"source": '{ bus = "main", topic = "t", service = "" }'}, "r",
     "source.service", "it is empty"),
    ("no type", {"type": None}, "r", "type", "missing"),
    ("bad pattern", {"type": '"a**"'}, "r", "type", "whole segment"),
    ("no targets", {"targets": "[]"}, "r", "targets", "one or more"),
    ("empty target topic", {"targets": '[{ bus = "edge", topic = "" }]'}, "r", "targets[0].topic",
     "must be a usable topic name: it is empty"),
    ("target without bus", {"targets": '[{ topic = "x" }]'}, "r", "targets[0].bus", "missing"),
    ("duplicate target", {"targets": f"[{EDGE_X}, {EDGE_X}]"}, "r", "targets[1]",
     "already a target"),
    ("target is the source", {"targets": '[{ bus = "main", topic = "t" }]'}, "r", "targets[0]",
     "loop"),
    ("no name", {"name": None}, None, "rules[0].name", "missing"),
    ("bad name", {"name": '"a rule"'}, None, "rules[0].name", "usable rule name"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("changes", "rule_name", "field", "reason"),
    [pytest.param(*case[1:], id=case[0]) for case in BAD_HEADS],
)
def test_a_bad_source_type_or_target_is_named_by_file_rule_and_field(
    changes: dict[str, str | None], rule_name: str | None, field: str, reason: str
) -> None:
    fields = {**GOOD_HEAD, **changes}
    text = "[[rules]]\n" + "".join(f"{k} = {v}\n" for k, v in fields.items() if v is not None)

    (problem,) = problems_of(BUSES + text)

    assert (problem.file, problem.rule, problem.field) == ("hub.toml", rule_name, field)
    assert reason in problem.reason


@pytest.mark.parametrize(
    ("text", "field", "reason"),
    [
        ("", "buses", "missing"),
        ('[buses]\nmain = "memory://"\n', "rules", "missing"),
        ("rules = 3\n" + BUSES, "rules", "one or more"),
        ("rules = [1]\n" + BUSES, "rules[0]", "expected a table"),
        ('buses = "memory://"\n' + rule("r"), "buses", "expected a table"),
        ("[buses]\n" + rule("r"), "buses", "no bus is named"),
        ("[buses]\nmain = 3\n" + rule("r"), "buses.main", "expected a bus URL"),
        ('[buses]\nmain = "mysql://x"\n' + rule("r"), "buses.main", "not a bus URL"),
        ('[buses]\n"a b" = "memory://"\n' + rule("r"), "buses.a b", "usable bus alias"),
        ('[buses]\nmain = { env = "UNSET_BUS" }\n' + rule("r"), "buses.main.env", "not set"),
        ("colour = 1\n" + BUSES + rule("r"), "colour", "unknown field"),
        ("rules = [[[", "file", "not valid TOML"),
    ],
    ids=[
        "empty",
        "no-rules",
        "rules-not-tables",
        "rule-not-a-table",
        "buses-not-table",
        "no-bus",
        "url-not-text",
        "bad-url",
        "bad-alias",
        "unset-url-variable",
        "unknown-top-level",
        "not-toml",
    ],
)
def test_a_bad_file_outside_the_rules_is_named_by_file_and_field(
    text: str, field: str, reason: str
) -> None:
    problems = problems_of(text)

    assert any(p.rule is None and p.field == field and reason in p.reason for p in problems), (
        problems
    )


def test_a_rule_name_used_twice_is_refused_at_the_second() -> None:
    (problem,) = problems_of(BUSES + rule("twice") + rule("other") + rule("twice"))

    assert (problem.rule, problem.field) == ("twice", "name")
    assert "rules[0]" in problem.reason


def test_every_problem_of_a_file_is_reported_and_nothing_is_loaded() -> None:
    text = BUSES + rule("fine") + rule("bad-1", type="a**") + rule("bad-2", topic="")

    with pytest.raises(InvalidConfig) as caught:
        parse_config(text, file="hub.toml", environ=ENVIRON)

    assert [(p.rule, p.field) for p in caught.value.problems] == [
        ("bad-1", "type"),
        ("bad-2", "source.topic"),
    ]
    assert str(caught.value).startswith("hub.toml: rule 'bad-1': type: ")
    assert str(caught.value).endswith("(and 1 more problem)")


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (None, "cannot be read"),
        (b"\xff\xfe[buses]", "not valid UTF-8"),
        (b"x" * (1024 * 1024 + 1), "larger than"),
    ],
    ids=["missing", "not-utf8", "too-large"],
)
def test_a_file_that_cannot_be_read_is_one_problem_naming_it(
    tmp_path: Path, content: bytes | None, reason: str
) -> None:
    path = tmp_path / "hub.toml"
    if content is not None:
        path.write_bytes(content)

    with pytest.raises(InvalidConfig) as caught:
        load_config(path)

    (problem,) = caught.value.problems
    assert (problem.file, problem.field) == (str(path), "file")
    assert reason in problem.reason


def test_a_file_loads_with_its_name_in_the_config(tmp_path: Path) -> None:
    path = tmp_path / "hub.toml"
    path.write_text(BUSES + rule("r"), encoding="utf-8")

    assert load_config(path, environ={}).file == str(path)


def test_tokenize_without_cryptography_names_the_extra_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # As where the extra was never installed: Python refuses these imports.
    for module in (
        "cryptography.hazmat.primitives",
        "cryptography.hazmat.primitives.ciphers.aead",
        "cryptography.hazmat.primitives.kdf.hkdf",
    ):
        monkeypatch.setitem(sys.modules, module, None)
    extra = step("op = 'tokenize', fields = ['a'], key_env = 'HUB_KEY'")

    (problem,) = problems_of(BUSES + rule("r", extra=extra))

    assert (problem.rule, problem.field) == ("r", "transforms[0].op")
    assert "pip install 'eventcore[federation]'" in problem.reason


# --- any value anywhere: loaded, or refused with problems, never another error ---------


def toml_value(value: Any) -> str:
    """``value`` as a TOML inline value (JSON's string escapes are TOML's too)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(each) for each in value) + "]"
    pairs = (f"{json.dumps(key)} = {toml_value(each)}" for key, each in value.items())
    return "{ " + ", ".join(pairs) + " }"


GOOD = {
    "buses": {"main": "memory://", "edge": "memory://"},
    "rules": [
        {
            "name": "r",
            "source": {"bus": "main", "topic": "users", "service": "users"},
            "type": "user.*",
            "targets": [{"bus": "edge", "topic": "billing"}],
            "stop": True,
            "transforms": [
                {"op": "rename", "from": "a", "to": "b.c"},
                {"op": "hash", "fields": ["email"], "key_env": "HUB_KEY"},
                {"op": "mask", "fields": ["card"], "keep": 4, "char": "#"},
                {"op": "function", "function": "tests.federation.test_transforms:initials"},
            ],
        }
    ],
}
SCALARS = st.one_of(
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
    st.sampled_from(["", "main", "edge", "HUB_KEY", "*", "**", "a.b", "op", "hash", "x:y"]),
)
VALUES = st.recursive(
    SCALARS,
    lambda kids: (
        st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=6), kids, max_size=3)
    ),
    max_leaves=6,
)


def places(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key and index of the document, nested ones too."""
    found = [path] if path else []
    items = (
        value.items()
        if isinstance(value, dict)
        else enumerate(value)
        if isinstance(value, list)
        else ()
    )
    for key, each in items:
        found += places(each, (*path, key))
    return found


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_any_value_anywhere_loads_or_is_refused_with_problems(data: st.DataObject) -> None:
    document = copy.deepcopy(GOOD)
    path = data.draw(st.sampled_from(places(document)), label="place")
    parent = document
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = data.draw(VALUES, label="value")
    text = "\n".join(f"{key} = {toml_value(value)}" for key, value in document.items())

    refused: tuple[ConfigProblem, ...] = ()
    try:
        loaded = parse_config(text, file="hub.toml", environ=ENVIRON)
    except InvalidConfig as error:
        refused = error.problems
    else:
        assert len(loaded.rules) == 1
    assert all(problem.file == "hub.toml" and problem.field for problem in refused)
