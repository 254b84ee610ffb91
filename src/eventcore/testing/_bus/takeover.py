"""Every bus: a member that dies holding unsettled deliveries (killed, never closed)
leaves its partitions to its successor in order — the earliest unsettled message
first, then the rest as published."""

from __future__ import annotations

import time

import pytest

from eventcore.messaging.bus import Bus, Consumer, Delivery
from eventcore.testing._bus_fixtures import Connect
from eventcore.testing._bus_steps import PATIENCE, TOPIC, consume, ids, outgoing

#: Short, so that a bus which only sends the dead member's deliveries again once their
#: ack wait ran out shows the later messages first within the test, not after it.
ACK_WAIT = 1.0
COUNT = 10


async def _first_fetch(consumer: Consumer, most: int) -> list[Delivery]:
    """The first non-empty fetch of up to ``most`` deliveries, unsettled."""
    deadline = time.monotonic() + PATIENCE
    while not (got := await consumer.fetch(most, timeout=0.5)):
        if time.monotonic() > deadline:
            pytest.fail("nothing was delivered")
    return got


class TakeoverContract:
    """Part of :class:`BusContract`: a member that dies holding unsettled deliveries
    leaves its partitions to its successor in order."""

    @pytest.mark.asyncio
    async def test_a_member_restarted_after_a_kill_gets_the_earliest_unsettled_message_first(
        self, bus: Bus, make_bus: Connect
    ) -> None:
        await bus.publish(outgoing(COUNT, keys=1))
        dead = await bus.consumer(TOPIC, "billing", member="a", ack_wait=ACK_WAIT)
        held = await _first_fetch(dead, 4)
        await dead.ack(held[:1])
        # From here on ``dead`` is never called again, as if its process had been killed
        # (kill -9): no ack, no nak, no close. The member comes back under its own name
        # in another process (another handle), which takes its partitions at once.
        restarted = await (await make_bus()).consumer(
            TOPIC, "billing", member="a", ack_wait=ACK_WAIT
        )

        got = await consume(restarted, COUNT - 1)

        assert ids(got) == [f"m{i}" for i in range(1, COUNT)]
        left = set(ids(held[1:]))
        assert all(d.attempt == 2 for d in got if d.message_id in left)
        assert all(d.attempt == 1 for d in got if d.message_id not in set(ids(held)))
