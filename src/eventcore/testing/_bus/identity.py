"""Every bus: each message has an identity of its own, the same on every delivery, and its
dead letter is named by it — also a message from a producer that gave it no id (on NATS,
one published without ``Nats-Msg-Id``), whose letters once overwrote each other."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from eventcore.errors import DeadLetterNotFound
from eventcore.messaging.bus import Bus, DeadLetter, Delivery
from eventcore.testing._bus_fixtures import PublishForeign
from eventcore.testing._bus_steps import TOPIC, consume, ids

GROUP = "billing"


def _letter(delivery: Delivery) -> DeadLetter:
    """The letter a subscriber of ``GROUP`` would park for ``delivery``."""
    return DeadLetter(
        letter_id=DeadLetter.id_for(GROUP, TOPIC, delivery.message_id),
        group=GROUP,
        topic=TOPIC,
        message_id=delivery.message_id,
        key=delivery.key,
        body=delivery.body,
        reason="InvalidMessage: not valid JSON",
        error_type="InvalidMessage",
        attempts=1,
        failed_at=datetime.now(UTC),
    )


class IdentityContract:
    """Part of :class:`BusContract`: each message has an identity of its own,
    the same on every delivery, and its dead letter is named by it — also a message from
    a producer that gave it no id (on NATS, one published without ``Nats-Msg-Id``),
    whose letters once overwrote each other."""

    @pytest.mark.asyncio
    async def test_messages_without_an_id_each_get_their_own_stable_identity_and_letter(
        self, publish_foreign: PublishForeign, bus: Bus
    ) -> None:
        bodies = [b"not json 1", b"not json 2", b"not json 3"]
        await publish_foreign(bus, TOPIC, "k", bodies)
        consumer = await bus.consumer(TOPIC, GROUP)

        delivered: list[Delivery] = []
        for _ in bodies:
            (first,) = await consume(consumer, 1, batch=1, ack=False)
            await consumer.nak(first)
            (again,) = await consume(consumer, 1, batch=1, ack=False)
            # The same message keeps its identity when it is delivered again.
            assert (again.message_id, again.attempt) == (first.message_id, 2)
            await consumer.ack([again])
            delivered.append(again)

        assert [d.body for d in delivered] == bodies
        assert all(ids(delivered))
        assert len(set(ids(delivered))) == 3
        box = bus.dead_letters
        letters = [_letter(delivery) for delivery in delivered]
        for letter in letters:
            await box.put(letter)

        # Three messages, three letters: each can be fetched, retried and dropped on its own.
        assert sorted(letter.letter_id for letter in await box.letters()) == sorted(
            letter.letter_id for letter in letters
        )
        assert [(await box.get(letter.letter_id)).body for letter in letters] == bodies
        await box.request_retry(letters[0].letter_id)
        (claimed,) = await box.claim_retries(GROUP, TOPIC)
        assert (claimed.letter_id, claimed.body) == (letters[0].letter_id, bodies[0])
        await box.drop(letters[1].letter_id)
        with pytest.raises(DeadLetterNotFound):
            await box.get(letters[1].letter_id)
        # The claimed letter stays until its claimer is done with it.
        assert sorted(letter.body for letter in await box.letters()) == [bodies[0], bodies[2]]
