"""The command line, fuzzed: every command and every option, with bad values drawn by
hypothesis (issue 9's standing adversarial suite).

The commands and their parameters are found by walking the command tree typer builds
from the app, so a command or option added later is fuzzed without a line here, and
``test_the_fuzz_covers_every_command_and_option`` fails for a parameter whose kind of
value the fuzz does not know yet (a float, a path, a choice): teach it, then.

Each case gives one parameter a bad value and the others a good one (the command's
baseline, which succeeds on its own: ``test_every_baseline_succeeds``), runs the command
in-process through typer's runner, with the current directory in a scratch directory
holding one file of each kind, and asserts what every command promises for bad input:
an exit status other than 0, no traceback, exactly one line on stderr, nothing on
stdout, and no file created or changed (every file's bytes, before and after). A few
cases run as real processes, with argv bytes that are not UTF-8.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import socket
import sqlite3
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import typer.main
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner, Result

from eventcore.cli import app
from eventcore.cli.sagas import STATUSES
from eventcore.registry import open_registry
from tests.backends import POSTGRES_URL
from tests.cli.conftest import run_eventcore, snapshot, write_history
from tests.cli.saga_samples import write_sagas
from tests.cli.samples import LETTERS, fill_letters, project

#: URL parameters, by name: the kind of file a good one names.
URL_KINDS = {
    "store": "store",
    "url": "store",
    "bus": "bus",
    "target": "target",
    "registry": "registry",
}
#: ``module:attribute`` parameters, by name, with a good value each.
REFERENCES = {
    "app_ref": "tests.projection.orders:projections",
    "registry_ref": "tests.projection.orders:registry",
    "sagas_ref": "tests.cli.saga_samples:SAGAS",
}
#: Options that take one of a few words, by name: the words.
CHOICES = {"status": STATUSES}
#: A good value for each required option that takes free text.
TEXTS = {"reason": "refunded by hand", "config": "hub.toml"}
#: Options a command does without, but without which its other options are never read:
#: ``federate --group X`` alone only prints the help; with --config it runs the hub.
NEEDED = {(("federate",), "config")}
#: (command, URL parameter) pairs that create what they name when it is missing: for
#: them a missing file, an empty one or a new schema are good values, not bad ones.
CREATING = {(("demo",), "store"), (("db", "migrate"), "url")}
#: A good value for each parameter that names something that must exist.
EXISTING = {
    "stream_id": "account-alice",
    "letter_id": LETTERS[0].letter_id,
    "name": "order_summary",
    "config": "hub.toml",
    "event": "event.json",
    "saga_id": "order-3",
}
#: A federation hub's configuration and an event it routes (``federate check / explain``).
HUB_CONFIG = """\
[buses]
main = "memory://"

[[rules]]
name = "users-to-billing"
source = { bus = "main", topic = "users" }
type = "UserRegistered"
targets = [{ bus = "main", topic = "billing" }]
transforms = [
    { op = "rename-type", to = "CustomerCreated" },
    { op = "redact", fields = ["email"] },
]
"""
HUB_EVENT = """\
{"specversion": "1.0", "datacontenttype": "application/json", "id": "e-1",
 "source": "users", "type": "UserRegistered", "subject": "user-1",
 "time": "2026-12-03T10:00:00Z", "streamversion": "1", "data": {"email": "a@example.com"}}
"""


# --- the command tree ------------------------------------------------------------------


@dataclass(frozen=True)
class Param:
    """One parameter of one command (or group), and what the fuzz knows of it."""

    command: tuple[str, ...]
    name: str
    is_option: bool
    opts: tuple[str, ...]
    value_type: str  # typer's name for it: "str", "int", "bool", "list[str]", ...
    required: bool
    low: float | None
    high: float | None

    @property
    def label(self) -> str:
        shown = self.opts[0] if self.is_option else self.name.upper()
        return " ".join([*self.command, shown]) or "eventcore"

    @property
    def role(self) -> str | None:
        """Which bad values it gets, or None if the fuzz does not know its kind."""
        if self.value_type == "bool":
            return "flag"
        if self.value_type == "int":
            return "number"
        if self.value_type == "float":
            return "seconds"
        if self.value_type not in {"str", "list[str]"}:
            return None
        if self.name in URL_KINDS:
            return "url"
        if self.name in REFERENCES:
            return "reference"
        if self.name in {"group", "topic", "service"}:
            return "name"
        if self.name in CHOICES:
            return "choice"
        # A positional argument names a thing that must exist (a stream, a letter, a
        # projection); an option is a filter or a label, for which any text may be fine.
        return "existing" if not self.is_option else "text"


def walk(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    yield path, command
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        yield from walk(sub, (*path, name))


def params() -> list[Param]:
    found = []
    for path, command in walk(typer.main.get_command(app)):
        for param in command.params:
            found.append(
                Param(
                    command=path,
                    name=param.name,
                    is_option=param.param_type_name == "option",
                    opts=tuple(param.opts),
                    value_type=param.bare_type(),
                    required=bool(param.required),
                    low=getattr(param, "min", None),
                    high=getattr(param, "max", None),
                )
            )
    return found


def leaf_commands() -> list[tuple[str, ...]]:
    return [
        path
        for path, command in walk(typer.main.get_command(app))
        if not getattr(command, "commands", None)
    ]


PARAMS = params()
VALUED = [param for param in PARAMS if param.role not in {None, "flag"}]
FLAGS = [param for param in PARAMS if param.role == "flag"]

# --- the scratch directory -------------------------------------------------------------


@dataclass(frozen=True)
class Scratch:
    directory: Path
    files: dict[str, Path]  # by kind: store, bus, target
    closed_port: int
    fresh_schema: str

    def url(self, kind: str) -> str:
        return f"sqlite://{self.files[kind].as_posix()}"


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def _settle(path: Path) -> None:
    """Fold a file's WAL back, so that only a command can change its bytes."""
    connection = sqlite3.connect(path)
    try:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        connection.close()


async def _make_registry(url: str) -> None:
    registry = await open_registry(url)
    await registry.aclose()


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scratch]:
    directory = tmp_path_factory.mktemp("cli-fuzz")
    files = {
        "store": directory / "events.db",
        "bus": directory / "bus.db",
        "target": directory / "views.db",
        "registry": directory / "registry.db",
    }
    store_url = f"sqlite://{files['store'].as_posix()}"
    asyncio.run(project(store_url, files["target"]))
    # A stream to show; of a type the projection does not handle, so a rebuild skips it.
    asyncio.run(write_history(store_url, [("account-alice", "AccountOpened", b"{}")]))
    # Sagas to list, show, retry and abort (order-3 is stuck).
    asyncio.run(write_sagas(store_url))
    asyncio.run(fill_letters(f"sqlite://{files['bus'].as_posix()}"))
    asyncio.run(_make_registry(f"sqlite://{files['registry'].as_posix()}"))
    (directory / "notes.txt").write_text("not a database\n")
    (directory / "hub.toml").write_text(HUB_CONFIG)
    (directory / "event.json").write_text(HUB_EVENT)
    (directory / "empty.db").touch()
    with sqlite3.connect(directory / "theirs.db") as theirs:
        theirs.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY)")
    for each in directory.glob("*.db"):
        _settle(each)
    schema = f"fuzz_{uuid.uuid4().hex[:12]}"
    yield Scratch(directory, files, _closed_port(), schema)
    with (
        contextlib.suppress(psycopg.Error),
        psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=5) as admin,
    ):
        admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def schema_exists(schema: str) -> bool:
    try:
        with psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=5) as admin:
            found = admin.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,))
            return found.fetchone() is not None
    except psycopg.OperationalError:
        return False  # no server: then nothing can have been created there either


# --- good values and bad ones ----------------------------------------------------------


def good_value(param: Param, scratch: Scratch) -> str:
    if param.role == "url":
        return scratch.url(URL_KINDS[param.name])
    if param.role == "reference":
        return REFERENCES[param.name]
    if param.role == "existing":
        return EXISTING[param.name]
    if param.role == "text" and param.name in TEXTS:
        return TEXTS[param.name]
    raise AssertionError(f"no good value for {param.label}")


def baseline(command: tuple[str, ...], scratch: Scratch) -> list[tuple[Param, str]]:
    """The parameters a command needs to succeed, with good values: its arguments, its
    required options, and the store, bus or target it opens."""
    chosen = []
    for param in PARAMS:
        if param.command != command:
            continue
        if (
            not param.is_option
            or param.required
            or param.role == "url"
            or (command, param.name) in NEEDED
        ):
            if param.name == "store" and command == ("demo",):
                continue  # the demo's own temporary store is the good value
            chosen.append((param, good_value(param, scratch)))
    return chosen


def argv(command: tuple[str, ...], values: list[tuple[Param, str]]) -> list[str]:
    options: list[str] = []
    arguments: list[str] = []
    for param, value in values:
        if param.is_option:
            options += [param.opts[0], value]
        else:
            arguments.append(value)
    # Arguments after "--": a bad value may start with "-" and must still be the value.
    return [*command, *options, "--", *arguments] if arguments else [*command, *options]


def not_utf8() -> st.SearchStrategy[str]:
    """What Python makes of argv bytes that are not UTF-8: lone surrogates."""
    return st.binary(max_size=12).map(
        lambda raw: (raw + b"\xff").decode("utf-8", "surrogateescape")
    )


BLANK = st.sampled_from(["", " ", "\t", " \n "])


def bad_numbers(param: Param) -> st.SearchStrategy[str]:
    below = st.integers(max_value=(param.low if param.low is not None else 0) - 1)
    choices = [
        below.map(str),
        st.integers(min_value=-(10**40), max_value=-1).map(str),
        st.sampled_from(["1.5", "1e3", "0x10", "ten", "--", "9" * 5000, "-" + "9" * 5000]),
        BLANK,
        not_utf8(),
    ]
    if param.high is not None:
        choices.append(st.integers(min_value=param.high + 1, max_value=10**40).map(str))
    return st.one_of(*choices)


def bad_seconds(param: Param) -> st.SearchStrategy[str]:
    """A duration below its option's floor, or not a finite number at all."""
    floor = param.low if param.low is not None else 0.0
    return st.one_of(
        st.floats(max_value=floor, exclude_max=True, allow_nan=False).map(repr),
        st.sampled_from(["0", "-0", "nan", "inf", "-inf", "1e999", "ten", "1,5", "0x10"]),
        st.just("9" * 5000),  # a float's text that overflows to inf
        BLANK,
        not_utf8(),
    )


def bad_references() -> st.SearchStrategy[str]:
    return st.one_of(
        BLANK,
        not_utf8(),
        st.sampled_from(
            [
                "no-colon",
                ":projections",
                "tests.projection.orders:",
                "tests.projection.orders:nothing_here",
                "tests.projection.orders:OrderSummary.nope",
                "json:dumps",
                "..relative:x",
                "a b:c",
                "tests.cli.conftest:CORRELATION",
            ]
        ),
        # Module names no installed module has (random ones could import anything).
        st.from_regex(r"no_such_module_[a-z0-9_]{1,12}:[a-z_]{1,8}", fullmatch=True),
    )


def bad_urls(param: Param, scratch: Scratch) -> st.SearchStrategy[str]:
    """URLs of every wrong kind, in groups drawn alike: each group gets its share of a
    run's examples however long another group's list is."""
    work = scratch.directory.as_posix()
    kind = URL_KINDS[param.name]
    own = scratch.url(kind)
    port = scratch.closed_port
    # Files that are not what the parameter wants: another kind's, someone else's
    # database, text, a directory, a missing directory, places nobody may write.
    files = [
        *(scratch.url(other) for other in scratch.files if other != kind),
        f"sqlite://{work}/theirs.db",
        f"sqlite://{work}/notes.txt",
        f"sqlite://{work}",
        f"sqlite://{work}/nowhere/events.db",
        "sqlite:///proc/version",
        "sqlite:///proc/eventcore-fuzz.db",
    ]
    shapes = [
        "events.db",
        "://nothing",
        "sqlite://",
        "sqlite://?synchronous=FULL",
        "mysql://db/events",
        "http://example.com/events",
        "file:///etc/passwd",
        f"sqlite://{work}/nul\x00.db",
        f"sqlite://{work}/new\nline.db",
        f"{own}?colour=red",
        f"{own}?synchronous",
    ]
    # The wrong backend, a server that is not there, options out of range.
    servers = {
        "store": [
            f"{own}?synchronous=SOMETIMES",
            f"{own}?max_payload_bytes=0",
            f"{own}?max_payload_bytes=99999999999999999999",
            "nats://127.0.0.1:4222",
            f"postgresql://postgres@127.0.0.1:{port}/test",
            "postgresql://postgres@127.0.0.1:port/test",
            "postgresql://",
            f"{POSTGRES_URL}?schema=Bad-Name",
            f"{POSTGRES_URL}?pool_size=0",
            f"{POSTGRES_URL}?pool_size=99999999999999999999",
            f"{POSTGRES_URL}?connect_timeout=-1",
            f"{POSTGRES_URL}?pool_timeout=nan",
            f"{POSTGRES_URL}?notify=maybe",
            f"{POSTGRES_URL}?sslmode=sometimes&connect_timeout=2",
        ],
        "bus": [
            f"{own}?partitions=0",
            f"{own}?partitions=99999999999999999999",
            f"{own}?namespace=x",
            "memory://somewhere",
            "nats://",
            f"nats://127.0.0.1:{port}",
            POSTGRES_URL,
        ],
        "registry": [
            f"{own}?namespace=x",
            f"{own}?partitions=2",
            "memory://somewhere",
            "nats://",
            f"nats://127.0.0.1:{port}",
            "nats://127.0.0.1:4222?namespace=bad.name",
            POSTGRES_URL,
        ],
        "target": [
            f"{own}?synchronous=FULL",
            "memory://",
            "nats://127.0.0.1:4222",
            f"postgresql://postgres@127.0.0.1:{port}/test",
            f"{POSTGRES_URL}?schema=Bad-Name",
        ],
    }[kind]
    groups = [files, shapes, servers]
    if (param.command, param.name) not in CREATING:
        # Looking creates nothing: what is not there is "not found", never made.
        absent = [f"sqlite://{work}/missing.db", f"sqlite://{work}/empty.db"]
        if kind != "target":
            absent.append("memory://")
        if kind not in {"bus", "registry"}:
            absent.append(f"{POSTGRES_URL}?schema={scratch.fresh_schema}")
        groups.append(absent)
    schemes = st.from_regex(r"[a-z][a-z0-9+.-]{0,9}", fullmatch=True).filter(
        lambda scheme: scheme not in {"sqlite", "postgres", "postgresql", "memory", "nats"}
    )
    return st.one_of(
        *(st.sampled_from(group) for group in groups),
        BLANK,
        not_utf8().map(lambda junk: f"sqlite://{work}/{junk}.db"),
        schemes.map(lambda scheme: f"{scheme}://{work}/events.db"),
        st.text(max_size=30).filter(lambda text: "://" not in text),
    )


def bad_values(param: Param, scratch: Scratch) -> st.SearchStrategy[str]:
    if param.role == "number":
        return bad_numbers(param)
    if param.role == "seconds":
        return bad_seconds(param)
    if param.role == "url":
        return bad_urls(param, scratch)
    if param.role == "reference":
        return bad_references()
    always = [BLANK, not_utf8()]
    if param.role == "name":
        # Names a bus cannot use: a character beyond letters, digits, - and _, or too long.
        invalid = st.text(min_size=1, max_size=20).filter(
            lambda text: re.fullmatch(r"[A-Za-z0-9_-]+", text) is None
        )
        return st.one_of(*always, invalid, st.just("g" * 65))
    if param.role == "existing":
        return st.one_of(*always, st.text(min_size=1, max_size=40))
    if param.role == "choice":
        words = CHOICES[param.name]
        return st.one_of(
            *always,
            st.text(min_size=1, max_size=20).filter(lambda text: text not in words),
            st.sampled_from([word.upper() for word in words] + [f" {words[0]}", "stuck,running"]),
        )
    return st.one_of(*always)


# --- running a case --------------------------------------------------------------------

RUNNER = CliRunner()
#: Nothing from the environment: each case names everything it uses.
ENVIRONMENT = {
    "COLUMNS": "120",
    "EVENTCORE_STORE": "",
    "EVENTCORE_BUS": "",
    "EVENTCORE_TARGET": "",
    "EVENTCORE_REGISTRY": "",
}


def check_refused(result: Result, args: list[str]) -> None:
    """What every command promises for bad input (the files are checked by the caller)."""
    shown = f"eventcore {' '.join(map(repr, args))}"
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"{shown} raised {result.exception!r}"
    )
    assert result.exit_code not in (0, None), f"{shown} succeeded:\n{result.output}"
    assert "Traceback" not in result.output, f"{shown}:\n{result.output}"
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"{shown} printed {len(lines)} lines on stderr:\n{result.stderr}"
    assert lines[0].startswith("error: "), f"{shown}: {lines[0]}"
    assert result.stdout == "", f"{shown} printed on stdout:\n{result.stdout}"


def run_case(scratch: Scratch, args: list[str]) -> None:
    before = snapshot(scratch.directory)
    with contextlib.chdir(scratch.directory):
        result = RUNNER.invoke(app, args, env=ENVIRONMENT)
    check_refused(result, args)
    assert snapshot(scratch.directory) == before, f"eventcore {args!r} changed files"
    if any(scratch.fresh_schema in arg for arg in args):
        assert not schema_exists(scratch.fresh_schema), f"eventcore {args!r} made a schema"


#: Examples per parameter, and per command for unknown options: the whole module runs in
#: about a minute on a laptop (a run of a few hundred commands, most of them in-process).
EXAMPLES_PER_PARAMETER = 30
EXAMPLES_PER_COMMAND = 10


def fuzz(examples: int) -> Any:
    return settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


@pytest.mark.parametrize("param", VALUED, ids=lambda param: param.label)
@fuzz(EXAMPLES_PER_PARAMETER)
@given(data=st.data())
def test_a_bad_value_is_refused_in_one_line_and_changes_nothing(
    scratch: Scratch, param: Param, data: st.DataObject
) -> None:
    value = data.draw(bad_values(param, scratch), label=param.label)
    chosen = [(each, good) for each, good in baseline(param.command, scratch) if each != param]
    run_case(scratch, argv(param.command, [*chosen, (param, value)]))


@pytest.mark.parametrize("param", FLAGS, ids=lambda param: param.label)
def test_a_flag_given_a_value_is_refused(scratch: Scratch, param: Param) -> None:
    good = baseline(param.command, scratch) if param.command in leaf_commands() else []
    run_case(scratch, [*argv(param.command, good), f"{param.opts[0]}=yes"])


@pytest.mark.parametrize("command", leaf_commands(), ids=" ".join)
@fuzz(EXAMPLES_PER_COMMAND)
@given(option=st.from_regex(r"--[a-z][a-z-]{0,15}", fullmatch=True))
def test_an_unknown_option_is_refused(
    scratch: Scratch, command: tuple[str, ...], option: str
) -> None:
    known = {opt for param in PARAMS if param.command == command for opt in param.opts}
    if option in known | {"--help"}:
        return
    run_case(scratch, [*argv(command, baseline(command, scratch)), option])


# --- coverage --------------------------------------------------------------------------


def test_the_fuzz_covers_every_command_and_option(scratch: Scratch) -> None:
    unknown = [param.label for param in PARAMS if param.role is None]
    assert not unknown, f"teach the fuzz these parameters' values: {unknown}"
    for command in leaf_commands():
        baseline(command, scratch)  # raises for a parameter without a good value
    covered = {(param.command, param.name) for param in VALUED + FLAGS}
    every = {
        (path, each.name)
        for path, command in walk(typer.main.get_command(app))
        for each in command.params
    }
    assert covered == every
    # The walk sees every command the app has (a sanity check of the walk itself).
    assert {" ".join(path) for path in leaf_commands()} >= {
        "streams list",
        "streams show",
        "events tail",
        "db migrate",
        "dlq list",
        "dlq show",
        "dlq retry",
        "dlq drop",
        "projections list",
        "projections status",
        "projections rebuild",
        "federate check",
        "federate explain",
        "sagas list",
        "sagas show",
        "sagas retry",
        "sagas abort",
        "services list",
        "demo",
    }


#: Commands that serve until they are stopped: their good run is a process stopped by a
#: signal, in their own tests (``federate run``: tests/cli/test_federate.py).
SERVING = {("federate", "run")}


@pytest.mark.parametrize(
    "command", [each for each in leaf_commands() if each not in SERVING], ids=" ".join
)
def test_every_baseline_succeeds(
    scratch: Scratch, command: tuple[str, ...], tmp_path: Path
) -> None:
    # In a copy: a baseline may write (retry a letter, rebuild a projection, run the demo).
    copy = tmp_path / "copy"
    shutil.copytree(scratch.directory, copy)
    moved = Scratch(
        copy,
        {kind: copy / path.name for kind, path in scratch.files.items()},
        scratch.closed_port,
        scratch.fresh_schema,
    )
    args = argv(command, baseline(command, moved))
    if command == ("demo",):
        args += ["--accounts", "2", "--transfers", "1"]
    with contextlib.chdir(copy):
        result = RUNNER.invoke(app, args, env=ENVIRONMENT)
    assert result.exit_code == 0, f"eventcore {args!r}:\n{result.output}"


# --- real processes, real bytes --------------------------------------------------------

REAL_CASES = [
    [b"streams", b"show", b"--store", b"STORE", b"--", b"acc\xffount"],
    [b"events", b"tail", b"--store", b"STORE", b"--type", b"\xc3\x28"],
    [b"dlq", b"list", b"--bus", b"sqlite:///tmp/\xfe\xfe.db"],
    [b"projections", b"rebuild", b"order_summary", b"--app", b"mod\xed\xa0\x80:x"],
    [b"demo", b"--seed", b"\xf0\x28\x8c\x28"],
    [b"sagas", b"show", b"--store", b"STORE", b"--", b"order-\xff"],
    [b"sagas", b"retry", b"order-3", b"--store", b"STORE", b"--sagas", b"tests.cli.\xfe:SAGAS"],
    [b"db", b"migrate", b"sqlite:///nowhere/\x80.db"],
    [b"services", b"list", b"--registry", b"sqlite:///tmp/\xfe.db"],
]


@pytest.mark.parametrize(
    "args", REAL_CASES, ids=lambda args: args[0].decode() + "-" + args[1].decode()
)
def test_argv_bytes_that_are_not_utf8_in_a_real_process(
    scratch: Scratch, args: list[bytes]
) -> None:
    store = scratch.url("store").encode()
    argv_bytes = [store if arg == b"STORE" else arg for arg in args]
    before = snapshot(scratch.directory)
    done = run_eventcore(argv_bytes, scratch.directory)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.decode("utf-8").splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: ")
    assert "not valid UTF-8" in lines[0]
    assert done.stdout == b""
    assert snapshot(scratch.directory) == before
