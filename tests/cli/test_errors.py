"""Which exit code each kind of eventcore error leaves with."""

from __future__ import annotations

import pytest

from eventcore.cli.errors import EXIT_FAILURE, EXIT_STORE, EXIT_USAGE, exit_code
from eventcore.errors import (
    CommandRejected,
    EventcoreError,
    InvalidStreamId,
    InvalidUrl,
    StoreClosed,
    StoreUnavailable,
    StreamNotFound,
)


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (InvalidUrl("x", "bad"), EXIT_USAGE),
        (InvalidStreamId("", "it is empty"), EXIT_USAGE),
        (StreamNotFound("s"), EXIT_FAILURE),
        (CommandRejected("no"), EXIT_FAILURE),
        (StoreUnavailable("down"), EXIT_STORE),
        (StoreClosed(), EXIT_STORE),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, EventcoreError) else str(value),
)
def test_exit_code_follows_what_the_user_can_do(error: EventcoreError, code: int) -> None:
    assert exit_code(error) == code
