"""``eventcore federate check|explain``: a hub's configuration checked, and one event
routed through it, without a bus."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from eventcore.federation import Tokenizer, routed_id
from tests.cli.conftest import invoke
from tests.federation.samples import BUSES, KEY, rule

HUB = (
    BUSES
    + rule(
        "users-to-billing",
        type="UserRegistered",
        extra='stop = true\ntransforms = [{ op = "rename-type", to = "CustomerCreated" },'
        ' { op = "tokenize", fields = ["email"], key_env = "HUB_KEY" }]',
    )
    + rule("never-tried")
    + rule("orders", type="Order*", topic="orders", extra="stop = true")
)
EVENT = {
    "specversion": "1.0",
    "datacontenttype": "application/json",
    "id": "event-1",
    "source": "users",
    "type": "UserRegistered",
    "subject": "user-1",
    "time": "2026-12-03T10:00:00Z",
    "streamversion": "1",
    "correlationid": "corr-1",
    "data": {"name": "Ada", "email": "ada@example.com"},
}
ENV = {"HUB_KEY": KEY}


@pytest.fixture
def files(tmp_path: Path) -> tuple[str, str]:
    (tmp_path / "hub.toml").write_text(HUB, encoding="utf-8")
    (tmp_path / "event.json").write_text(json.dumps(EVENT), encoding="utf-8")
    return str(tmp_path / "hub.toml"), str(tmp_path / "event.json")


def test_check_accepts_a_good_configuration(runner: CliRunner, files: tuple[str, str]) -> None:
    result = invoke(runner, "federate", "check", files[0], env=ENV)

    assert result.exit_code == 0, result.output
    assert "ok: 3 rules" in result.stdout


def test_check_prints_one_line_per_problem_and_exits_2(runner: CliRunner, tmp_path: Path) -> None:
    bad = tmp_path / "hub.toml"
    bad.write_text(BUSES + rule("a", type="a**") + rule("b", topic=""), encoding="utf-8")

    result = invoke(runner, "federate", "check", str(bad))

    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"error: {bad}: rule 'a': type: event-type pattern 'a**': '**' must be a whole "
        "segment (as in 'orders.**'), not part of one",
        f"error: {bad}: rule 'b': source.topic: must be a usable topic name: it is empty",
    ]


def test_check_names_an_unset_key_variable(runner: CliRunner, files: tuple[str, str]) -> None:
    result = invoke(runner, "federate", "check", files[0], env={"HUB_KEY": ""})

    assert result.exit_code == 2
    assert "transforms[1].key_env" in result.stderr


def test_explain_shows_the_matching_rules_and_the_exact_copy(
    runner: CliRunner, files: tuple[str, str]
) -> None:
    result = invoke(runner, "federate", "explain", *files, env=ENV)

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert "rule users-to-billing: matched -> edge/billing" in lines
    assert "rule users-to-billing stops the evaluation" in lines
    assert "rule never-tried: not tried (an earlier rule stopped)" in lines
    assert routed_id("users-to-billing", "event-1") in result.stdout


def test_explain_json_is_the_routing_as_one_object(
    runner: CliRunner, files: tuple[str, str]
) -> None:
    result = invoke(runner, "federate", "explain", *files, "--json", env=ENV)

    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["matched"] == ["users-to-billing"]
    assert record["stopped_by"] == "users-to-billing"
    assert record["failed"] == []
    (routed,) = record["routed"]
    assert routed["targets"] == ["edge/billing"]
    copy = routed["envelope"]
    assert copy["type"] == "CustomerCreated"
    assert copy["correlationid"] == "corr-1"
    assert copy["federationorigin"] == "main/users"
    assert Tokenizer(KEY.encode()).reveal(copy["data"]["email"]) == "ada@example.com"


def test_explain_with_an_origin_tries_only_the_rules_reading_there(
    runner: CliRunner, files: tuple[str, str]
) -> None:
    result = invoke(
        runner, "federate", "explain", *files, "--origin", "main/orders", "--json", env=ENV
    )

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["matched"] == []


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ("missing.json", "cannot be read: No such file or directory"),
        ("hub.toml", "invalid message: not a valid envelope"),
        ("bad.json", "streamversion"),
    ],
)
def test_explain_refuses_an_event_it_cannot_read_in_one_line(
    runner: CliRunner, files: tuple[str, str], tmp_path: Path, event: str, message: str
) -> None:
    (tmp_path / "bad.json").write_text(json.dumps({**EVENT, "streamversion": "0"}))

    result = invoke(runner, "federate", "explain", files[0], str(tmp_path / event), env=ENV)

    assert result.exit_code == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: ")
    assert message in line


@pytest.mark.parametrize("origin", ["main", "main/", "/users", "main/a.b"])
def test_explain_refuses_an_origin_that_is_not_bus_slash_topic(
    runner: CliRunner, files: tuple[str, str], origin: str
) -> None:
    result = invoke(runner, "federate", "explain", *files, "--origin", origin, env=ENV)

    assert result.exit_code == 2
    assert result.stderr.startswith("error: --origin")


def test_explain_shows_a_rule_that_failed_on_the_event_and_why(
    runner: CliRunner, files: tuple[str, str], tmp_path: Path
) -> None:
    # The path goes through a list: the rule cannot tell where the field would be.
    event = tmp_path / "odd.json"
    event.write_text(json.dumps({**EVENT, "data": {"email": {"home": ["a@example.com"]}}}))
    config = tmp_path / "lists.toml"
    config.write_text(
        BUSES + rule("r", extra='transforms = [{ op = "redact", fields = ["email.home.x"] }]')
    )

    shown = invoke(runner, "federate", "explain", str(config), str(event), env=ENV)
    record = invoke(runner, "federate", "explain", str(config), str(event), "--json", env=ENV)

    assert shown.exit_code == 0, shown.output
    assert "rule r: matched, failed at transforms[0] (redact email.home.x" in shown.stdout
    assert "'email.home' is a list, not an object" in shown.stdout
    (failure,) = json.loads(record.stdout)["failed"]
    assert failure["rule"] == "r"
    assert failure["reason"] == "'email.home' is a list, not an object"
