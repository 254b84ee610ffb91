"""``eventcore federate check|explain``: a hub's configuration checked, and one event
routed through it, without a bus."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from eventcore.federation import Tokenizer, routed_id
from eventcore.messaging import OutgoingMessage, open_bus
from tests.cli.conftest import invoke, process_environment
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


# --- federate run ------------------------------------------------------------------------

SQLITE_HUB = """
[buses]
main = "sqlite://{directory}/bus.db"

[[rules]]
name = "users-to-billing"
source = {{ bus = "main", topic = "users" }}
type = "UserRegistered"
targets = [{{ bus = "main", topic = "billing" }}]
transforms = [{{ op = "rename-type", to = "CustomerCreated" }}]
"""


def start_hub(*args: str, cwd: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-P", "-c", "from eventcore.cli import main\nmain()", "federate", *args],
        cwd=cwd,
        env=process_environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def publish_one(directory: Path) -> None:
    async def publish() -> None:
        bus = await open_bus(f"sqlite://{directory}/bus.db")
        body = json.dumps(EVENT).encode()
        await bus.publish([OutgoingMessage("users", "event-1", "user-1", body)])
        await bus.aclose()

    asyncio.run(publish())


@pytest.mark.parametrize(
    ("how", "stop"),
    [(("run", "hub.toml"), signal.SIGTERM), (("--config", "hub.toml"), signal.SIGINT)],
    ids=["run-sigterm", "config-sigint"],
)
def test_run_routes_until_a_signal_then_stops_cleanly(
    tmp_path: Path, how: tuple[str, str], stop: signal.Signals
) -> None:
    (tmp_path / "hub.toml").write_text(SQLITE_HUB.format(directory=tmp_path), encoding="utf-8")
    publish_one(tmp_path)
    hub = start_hub(*how, "--status-every", "0.05", cwd=tmp_path)
    try:
        assert hub.stdout is not None
        lines = [hub.stdout.readline().decode()]
        assert lines[0].startswith("federate: ready: hub 'federation', 1 rule"), lines
        while "1 routed" not in lines[-1]:
            lines.append(hub.stdout.readline().decode())
            assert lines[-1], lines
        hub.send_signal(stop)
        out, err = hub.communicate(timeout=30)
    finally:
        if hub.poll() is None:
            hub.kill()
    assert hub.returncode == 0, err.decode()
    assert (
        out.decode()
        .splitlines()[-1]
        .startswith("federate: stopped: 1 received, 1 routed, 0 unmatched, 0 dead-lettered")
    )
    assert b"Traceback" not in err


def test_run_refuses_a_bad_configuration_before_opening_anything(
    runner: CliRunner, tmp_path: Path
) -> None:
    bad = tmp_path / "hub.toml"
    bad.write_text(
        SQLITE_HUB.format(directory=tmp_path).replace('topic = "billing"', 'topic = ""'),
        encoding="utf-8",
    )
    result = invoke(runner, "federate", "run", str(bad))
    assert result.exit_code == 2
    assert "rule 'users-to-billing': targets[0].topic" in result.stderr
    assert not (tmp_path / "bus.db").exists()


def test_federate_without_a_command_or_config_shows_its_help(runner: CliRunner) -> None:
    result = invoke(runner, "federate")
    assert "run" in result.output
    assert "--config" in result.output
