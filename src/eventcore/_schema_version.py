"""The one version scheme of every schema eventcore keeps (store, bus and projection
target; SQLite and PostgreSQL alike).

A schema is a sequence of numbered migrations, 1, 2, 3…, each applied once and never
edited once shipped; a database records the highest version applied. A database at a
newer version than this eventcore knows is refused (``refuse_newer``); one that is older
is migrated on opening to write, and refused by openers that only look
(``require_current``). Where the version is recorded differs per kind of database and
stays as it was first shipped (existing files keep opening): ``PRAGMA user_version``
(SQLite bus), a ``schema_migrations`` table (SQLite and PostgreSQL stores), an
``eventcore_target_schema`` table (projection targets).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from eventcore.errors import DatabaseNotFound, EventcoreError

__all__ = ["Migration", "latest", "refuse_newer", "require_current"]

#: (version, statements): statements run in order, in one transaction with the record.
Migration = tuple[int, tuple[str, ...]]


def latest(migrations: Sequence[Migration]) -> int:
    """The version a database is at once every migration ran."""
    return migrations[-1][0]


def refuse_newer(
    found: int, latest: int, *, what: str, unavailable: Callable[[str], EventcoreError]
) -> None:
    """A database written by a newer eventcore is not touched: ``unavailable`` names the
    upgrade."""
    if found > latest:
        raise unavailable(
            f"the {what}'s schema version is {found}, newer than this eventcore"
            f" understands ({latest}); upgrade eventcore to open it"
        )


def require_current(
    found: int,
    latest: int,
    *,
    url: str,
    what: str,
    unavailable: Callable[[str], EventcoreError],
) -> None:
    """Opening without migrating (``create=False``, for tools that only look): the schema
    must be the one this eventcore writes already, since migrating it would be a write.

    ``found`` is the schema version ``url`` holds (0: none); ``what`` names the thing
    ("event store", "message bus"); ``unavailable`` builds the error for a version that
    is not ``latest``."""
    if found == 0:
        raise DatabaseNotFound(url, f"no {what} there yet")
    if found < latest:
        raise unavailable(
            f"the {what} is at schema version {found}, older than this eventcore's ({latest});"
            " opening it to write migrates it (a store: eventcore db migrate URL)"
        )
    refuse_newer(found, latest, what=what, unavailable=unavailable)
