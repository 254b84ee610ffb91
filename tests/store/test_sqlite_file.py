"""Every eventcore SQLite file says what it is — an event store, a bus or a projection
target — and no opener writes into a file of another kind (``store/_sqlite_file``).

Each test checks the bytes on disk, not only the error: a refusal must leave the file
exactly as it was.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Protocol

import pytest

from eventcore._sqlite.file import BUS, KINDS, STORE, TARGET, FileKind
from eventcore.errors import DatabaseNotFound, InvalidUrl
from eventcore.messaging import open_bus
from eventcore.projection import SqliteTarget
from eventcore.store import open_store


class Closable(Protocol):
    async def aclose(self) -> None: ...


Opener = Callable[[Path, bool], Awaitable[Closable]]


async def _store(path: Path, create: bool) -> Closable:
    return await open_store(f"sqlite://{path.as_posix()}", create=create)


async def _bus(path: Path, create: bool) -> Closable:
    return await open_bus(f"sqlite://{path.as_posix()}", create=create)


async def _target(path: Path, create: bool) -> Closable:
    return await SqliteTarget.open(path, create=create)


OPENERS: dict[str, tuple[FileKind, Opener]] = {
    "store": (STORE, _store),
    "bus": (BUS, _bus),
    "target": (TARGET, _target),
}
PAIRS = [(a, b) for a in OPENERS for b in OPENERS if a != b]


async def make(name: str, path: Path) -> None:
    opened = await OPENERS[name][1](path, True)
    await opened.aclose()


def snapshot(directory: Path) -> dict[str, str]:
    return {
        each.name: hashlib.sha256(each.read_bytes()).hexdigest()
        for each in sorted(directory.iterdir())
    }


def stamp(path: Path) -> int:
    with sqlite3.connect(path) as connection:
        return int(connection.execute("PRAGMA application_id").fetchone()[0])


def unstamp(path: Path) -> None:
    """Make ``path`` look like a file written before kinds were stamped."""
    connection = sqlite3.connect(path)
    try:
        connection.execute("PRAGMA application_id = 0")
        connection.commit()
    finally:
        connection.close()


def test_each_kind_has_its_own_stamp() -> None:
    assert len({kind.application_id for kind in KINDS}) == len(KINDS)
    assert all(0 < kind.application_id < 2**31 for kind in KINDS)


@pytest.mark.parametrize("name", OPENERS)
async def test_a_new_file_is_stamped_with_its_kind(name: str, tmp_path: Path) -> None:
    path = tmp_path / "file.db"
    await make(name, path)
    assert stamp(path) == OPENERS[name][0].application_id


@pytest.mark.parametrize(("made", "opened"), PAIRS)
@pytest.mark.parametrize("create", [True, False], ids=["create", "look"])
@pytest.mark.parametrize("stamped", [True, False], ids=["stamped", "by-its-tables"])
async def test_a_file_of_another_kind_is_refused_untouched(
    made: str, opened: str, create: bool, stamped: bool, tmp_path: Path
) -> None:
    path = tmp_path / "file.db"
    await make(made, path)
    if not stamped:
        unstamp(path)  # as written before kinds were stamped: known by its tables
    before = snapshot(tmp_path)

    with pytest.raises(InvalidUrl) as raised:
        await OPENERS[opened][1](path, create)

    message = str(raised.value)
    assert OPENERS[made][0].noun in message
    assert OPENERS[opened][0].noun in message
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("name", OPENERS)
async def test_an_unstamped_file_of_the_kind_opens_and_is_stamped_only_when_writing(
    name: str, tmp_path: Path
) -> None:
    kind, opener = OPENERS[name]
    path = tmp_path / "file.db"
    await make(name, path)
    unstamp(path)
    before = snapshot(tmp_path)

    looked = await opener(path, False)
    await looked.aclose()
    assert snapshot(tmp_path) == before
    assert stamp(path) == 0

    opened = await opener(path, True)
    await opened.aclose()
    assert stamp(path) == kind.application_id


async def test_an_unstamped_file_of_two_kinds_opens_as_either_and_stays_unstamped(
    tmp_path: Path,
) -> None:
    # What sharing one file gave before kinds were stamped: a store with a target inside.
    path = tmp_path / "shared.db"
    await make("store", path)
    unstamp(path)
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE eventcore_projections (name TEXT)")

    for name in ("store", "target"):
        opened = await OPENERS[name][1](path, True)
        await opened.aclose()
    assert stamp(path) == 0


@pytest.mark.parametrize("name", OPENERS)
async def test_an_empty_file_is_not_found_when_looking_and_claimed_when_creating(
    name: str, tmp_path: Path
) -> None:
    kind, opener = OPENERS[name]
    path = tmp_path / "empty.db"
    path.touch()

    with pytest.raises(DatabaseNotFound, match="empty"):
        await opener(path, False)
    assert snapshot(tmp_path) == {"empty.db": hashlib.sha256(b"").hexdigest()}

    opened = await opener(path, True)
    await opened.aclose()
    assert stamp(path) == kind.application_id


THEIRS = {
    # (how the file is made, what the refusal says)
    "other-tables": (
        [
            "CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)",
            "INSERT INTO invoices (total) VALUES (12.5)",
        ],
        "other tables",
    ),
    "other-stamp": (["PRAGMA application_id = 1234"], "not an eventcore file"),
}


@pytest.mark.parametrize("name", OPENERS)
@pytest.mark.parametrize("create", [True, False], ids=["create", "look"])
@pytest.mark.parametrize("theirs", THEIRS)
async def test_a_database_of_someone_else_is_refused_untouched(
    name: str, create: bool, theirs: str, tmp_path: Path
) -> None:
    path = tmp_path / "theirs.db"
    statements, refusal = THEIRS[theirs]
    with sqlite3.connect(path) as connection:
        for statement in statements:
            connection.execute(statement)
    before = snapshot(tmp_path)

    with pytest.raises(InvalidUrl, match=refusal):
        await OPENERS[name][1](path, create)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("name", OPENERS)
async def test_looking_at_a_file_of_the_kind_changes_nothing(name: str, tmp_path: Path) -> None:
    path = tmp_path / "file.db"
    await make(name, path)
    before = snapshot(tmp_path)

    opened = await OPENERS[name][1](path, False)
    await opened.aclose()

    assert snapshot(tmp_path) == before
