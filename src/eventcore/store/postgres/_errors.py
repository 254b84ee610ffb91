"""psycopg's errors translated into eventcore's, by SQLSTATE class — never by message text.

::

    PoolTimeout, connection lost (no SQLSTATE)    → StoreUnavailable
    08 connection exception, 57P0x shutdown,
    53 insufficient resources, 40 rollback
    (serialization failure, deadlock), 57014 cancel → StoreUnavailable  (retry later)
    22 data exception, client-side DataError       → InvalidInput       (fix the input)
    anything else                                   → StoreError

Unique violations on an append are explained from data read back, in ``postgres.py``.
The driver's error is always chained as the cause.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import psycopg
from psycopg_pool import PoolTimeout

from eventcore.errors import EventcoreError, InvalidInput, StoreError, StoreUnavailable

__all__ = ["is_connection_failure", "translate"]

_UNAVAILABLE_CLASSES: Final = ("08", "53", "40", "57P", "57014")


def is_connection_failure(error: BaseException) -> bool:
    """True when the connection (or the server) is gone, rather than the statement failing."""
    if isinstance(error, PoolTimeout):
        return True
    if not isinstance(error, psycopg.OperationalError | psycopg.InterfaceError):
        return False
    state = error.sqlstate
    return state is None or state.startswith(("08", "57P"))


def translate(
    error: psycopg.Error,
    operation: str,
    invalid: Callable[[str], InvalidInput] = InvalidInput,
) -> EventcoreError:
    """The eventcore error for ``error``, raised while doing ``operation``."""
    if isinstance(error, PoolTimeout):
        return StoreUnavailable(f"{operation}: no PostgreSQL connection available ({error})")
    state = error.sqlstate
    detail = error.diag.message_primary or str(error).strip()
    if state is None:
        if isinstance(error, psycopg.DataError):
            # Raised by the driver before sending, e.g. a NUL character in a text value.
            return invalid(f"{operation}: PostgreSQL cannot store a value: {detail}")
        if isinstance(error, psycopg.OperationalError | psycopg.InterfaceError):
            return StoreUnavailable(f"{operation}: lost the PostgreSQL connection: {detail}")
        return StoreError(f"{operation}: {type(error).__name__}: {detail}")
    if state.startswith(_UNAVAILABLE_CLASSES):
        return StoreUnavailable(f"{operation}: PostgreSQL is unavailable [{state}]: {detail}")
    if state.startswith("22"):
        return invalid(f"{operation}: PostgreSQL rejected a value [{state}]: {detail}")
    return StoreError(f"{operation}: PostgreSQL error [{state}]: {detail}")
