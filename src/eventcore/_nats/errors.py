"""nats-py's errors translated into eventcore's, in one place for the NATS bus.

What the caller can do decides the error:

* a request the server refuses as it is — a JetStream API error of status 400, a message
  over the server's ``max_payload`` — fails the same way if sent again: ``BusRejected``
  (an ``InvalidInput``);
* the server or the connection could not do it now — a JetStream 503 (no quorum, no
  stream leader, out of resources), a timeout, no responders, a dropped connection:
  ``BusUnavailable``, retry;
* any other JetStream API error (404, 500, …) is a ``BusError`` naming its status, error
  code and description;
* a connection we closed ourselves: ``BusClosed``.

The nats-py error is chained to each.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import nats.errors
import nats.js.errors

from eventcore.errors import BusClosed, BusError, BusRejected, BusUnavailable

__all__ = ["translate", "translated"]

#: JetStream's status for a request that is wrong as it stands, and for "not now".
_BAD_REQUEST = 400
_UNAVAILABLE = 503


def translate(error: BaseException, doing: str) -> BaseException:
    """The eventcore error for ``error``, met while ``doing``; ``error`` itself if it is
    not one of nats-py's (or a timeout, or an ``OSError``)."""
    if isinstance(error, nats.errors.ConnectionClosedError | nats.errors.ConnectionDrainingError):
        return BusClosed()
    if isinstance(error, nats.js.errors.APIError):
        # nats-py's subclasses are made from ``code``; a 503 read from a header carries
        # no code, only its class.
        code = 503 if isinstance(error, nats.js.errors.ServiceUnavailableError) else error.code
        said = (
            f"status {code}, error code {error.err_code}: {error.description or 'no description'}"
        )
        if code == _BAD_REQUEST:
            return BusRejected(
                f"NATS refused the request while {doing} ({said})",
                code=code,
                err_code=error.err_code,
            )
        if code == _UNAVAILABLE:
            return BusUnavailable(f"NATS could not do it now while {doing} ({said})")
        return BusError(f"NATS failed while {doing} ({said})")
    if isinstance(error, nats.errors.MaxPayloadError):
        return BusRejected(f"NATS refused a message while {doing}: {error}")
    if isinstance(error, TimeoutError):
        # nats.errors.TimeoutError is an asyncio.TimeoutError, which is TimeoutError.
        return BusUnavailable(f"NATS did not answer in time while {doing}")
    if isinstance(error, nats.errors.Error | nats.js.errors.Error | OSError):
        return BusUnavailable(f"NATS failed while {doing}: {error!r}")
    return error


@contextmanager
def translated(doing: str) -> Iterator[None]:
    """Run the block, turning nats-py's errors into eventcore's (see the module)."""
    try:
        yield
    except (nats.errors.Error, nats.js.errors.Error, TimeoutError, OSError) as error:
        raise translate(error, doing) from error
