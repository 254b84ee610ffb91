"""``PostgresTarget``: a projection's tables and checkpoints in one PostgreSQL schema.

``postgresql://user@host/db?schema=views`` — the tables go in ``schema`` (created if
missing; default ``public``). Like the SQLite target, each batch is one transaction
with its checkpoint. Handler SQL uses ``?`` placeholders on both targets; here they
become psycopg's ``%s`` (and a literal ``%`` becomes ``%%``) outside quoted text.

Versions of one projection change under a transaction-scoped advisory lock keyed by its
name, so two processes starting the same projection create its first version once.

``synchronous_commit=off`` by default (``?synchronous_commit=on`` to change it): a commit
then does not wait for its WAL flush (about half of a live batch's time on the server).
Like the SQLite target's ``synchronous=NORMAL``: a killed process loses nothing
committed; a server crash can lose the last commits, state and checkpoint *together*, so
those batches are simply applied again.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import sql

from eventcore.errors import InvalidUrl, StoreUnavailable
from eventcore.projection._sql_target import Dialect, SqlTarget
from eventcore.projection.projection import valid_identifier
from eventcore.redaction import redact

__all__ = ["PostgresTarget", "qmark_to_format"]

#: First key of the advisory locks this module takes (the second is hashtext(name)).
_LOCK_CLASS: Final = 0x45430010
_SYNCHRONOUS_COMMIT: Final = ("on", "off", "local", "remote_write", "remote_apply")
_QUOTED_OR_MARK: Final = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|[?%]")


def qmark_to_format(text: str) -> str:
    """``?`` → ``%s`` and ``%`` → ``%%``, except inside '…' strings and "…" names."""

    def swap(match: re.Match[str]) -> str:
        token = match.group(0)
        return "%s" if token == "?" else "%%" if token == "%" else token

    return _QUOTED_OR_MARK.sub(swap, text)


class _Postgres(Dialect[psycopg.Connection[Any]]):
    # FOR NO KEY UPDATE, not FOR SHARE: two commits to one version take turns, so the
    # second one's checkpoint check sees the first one's checkpoint.
    version_lock = " FOR NO KEY UPDATE"

    def __init__(
        self, conninfo: str, schema: str, synchronous_commit: str, *, where: str, create: bool
    ) -> None:
        self._conninfo = conninfo
        self._schema = schema
        self._synchronous_commit = synchronous_commit
        self._create = create
        self.where = where

    def connect(self) -> psycopg.Connection[Any]:
        conn = psycopg.connect(self._conninfo, autocommit=True)
        try:
            ident = sql.Identifier(self._schema)
            if self._create:
                with conn.transaction():
                    conn.execute(
                        "SELECT pg_advisory_xact_lock(%s, hashtext(%s))",
                        (_LOCK_CLASS, self._schema),
                    )
                    conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(ident))
            conn.execute(sql.SQL("SET search_path TO {}").format(ident))
            conn.execute(
                "SELECT set_config('synchronous_commit', %s, false)", (self._synchronous_commit,)
            )
        except BaseException:
            conn.close()
            raise
        return conn

    def run(self, conn: psycopg.Connection[Any], text: str, params: Any = ()) -> Any:
        # Always with params (even none): psycopg then turns the ``%%`` of ``rewrite`` back.
        return conn.execute(text.encode(), params)

    def bind_many(self, conn: psycopg.Connection[Any]) -> Callable[[str, list[Any]], object]:
        def run_many(text: str, params: list[Any]) -> None:
            # Inside the batch's pipeline the rows go out back to back, no wait for each.
            conn.cursor().executemany(text.encode(), params)

        return run_many

    def pipeline(self, conn: psycopg.Connection[Any]) -> contextlib.AbstractContextManager[object]:
        return conn.pipeline()

    def in_transaction(self, conn: psycopg.Connection[Any]) -> bool:
        return conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE

    def rewrite(self, text: str) -> str:
        return qmark_to_format(text)

    def serialize(self, conn: psycopg.Connection[Any], name: str) -> None:
        conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_LOCK_CLASS, name))

    def has_table(self, conn: psycopg.Connection[Any], name: str) -> bool:
        found = conn.execute(
            "SELECT 1 FROM pg_tables WHERE schemaname = %s AND tablename = %s",
            (self._schema, name),
        ).fetchone()
        return found is not None

    def close(self, conn: psycopg.Connection[Any]) -> None:
        conn.close()


class PostgresTarget(SqlTarget[psycopg.Connection[Any]]):
    """Open with ``await PostgresTarget.open(url)``; close with ``aclose()``."""

    def __init__(
        self,
        conninfo: str,
        schema: str,
        synchronous_commit: str = "off",
        *,
        where: str = "",
        create: bool = True,
    ) -> None:
        super().__init__(
            _Postgres(conninfo, schema, synchronous_commit, where=where or schema, create=create),
            "eventcore-projection-pg",
            create=create,
        )
        self.schema = schema

    @classmethod
    async def open(cls, url: str, *, create: bool = True) -> PostgresTarget:
        """Open the target a URL names, creating its schema and bookkeeping unless
        ``create`` is False: then they must be there, and opening writes nothing."""
        parts = urlsplit(url)
        if parts.scheme not in {"postgresql", "postgres"}:
            raise InvalidUrl(url, "expected a postgresql:// URL")
        options = dict(parse_qsl(parts.query))
        schema = options.pop("schema", "public")
        if not valid_identifier(schema):
            raise InvalidUrl(url, f"schema {schema!r} must be a plain lower-case name")
        synchronous_commit = options.pop("synchronous_commit", "off").lower()
        if synchronous_commit not in _SYNCHRONOUS_COMMIT:
            raise InvalidUrl(url, f"synchronous_commit must be one of {_SYNCHRONOUS_COMMIT}")
        conninfo = urlunsplit(("postgresql", parts.netloc, parts.path, urlencode(options), ""))
        # ``where`` is only ever shown (errors, status): never the password.
        target = cls(conninfo, schema, synchronous_commit, where=redact(url), create=create)
        try:
            await target._start()
        except psycopg.Error as error:
            await target.aclose()
            raise StoreUnavailable(f"cannot open the projection target: {error}") from error
        except BaseException:
            await target.aclose()
            raise
        return target
