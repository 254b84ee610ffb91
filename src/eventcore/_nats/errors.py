"""nats-py's errors translated into eventcore's, in one place for the NATS bus.

Every failure of the server or the connection (timeouts, no responders, a dropped
connection, a JetStream API error) means the bus could not do it now: ``BusUnavailable``,
with the nats-py error chained. A connection we closed ourselves means ``BusClosed``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import nats.errors
import nats.js.errors

from eventcore.errors import BusClosed, BusUnavailable

__all__ = ["translated"]


@contextmanager
def translated(doing: str) -> Iterator[None]:
    """Run the block, turning nats-py errors into ``BusUnavailable`` (or ``BusClosed``)."""
    try:
        yield
    except (nats.errors.ConnectionClosedError, nats.errors.ConnectionDrainingError) as error:
        raise BusClosed() from error
    except TimeoutError as error:
        # nats.errors.TimeoutError is an asyncio.TimeoutError, which is TimeoutError.
        raise BusUnavailable(f"NATS did not answer in time while {doing}") from error
    except (nats.errors.Error, nats.js.errors.Error, OSError) as error:
        raise BusUnavailable(f"NATS failed while {doing}: {error!r}") from error
