"""Every bus: the dead-letter box keeps, lists, pages, retries and drops letters."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest

from eventcore.errors import DeadLetterNotFound, InvalidInput
from eventcore.messaging.bus import Bus, DeadLetter, DeadLetterBox
from eventcore.messaging.envelope import DEFAULT_MAX_MESSAGE_BYTES
from eventcore.testing._bus_fixtures import Connect
from eventcore.types import StreamId

_T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def _letter(
    message_id: str, *, group: str = "billing", topic: str = "orders", minute: int = 0
) -> DeadLetter:
    return DeadLetter(
        letter_id=DeadLetter.id_for(group, topic, message_id),
        group=group,
        topic=topic,
        message_id=message_id,
        key=f"key-{message_id}",
        body=b'{"id": "%s"}' % message_id.encode(),
        reason="handler kept failing",
        error_type="ValueError",
        attempts=5,
        failed_at=_T0 + timedelta(minutes=minute),
    )


async def _box_with(bus: Bus, *letters: DeadLetter) -> DeadLetterBox:
    box = bus.dead_letters
    for letter in letters:
        await box.put(letter)
    return box


def _ids(letters: list[DeadLetter]) -> list[str]:
    return [letter.message_id for letter in letters]


def _unclaimed(letter: DeadLetter) -> DeadLetter:
    """``letter`` as it was before it was claimed (and marked for retry)."""
    return msgspec.structs.replace(letter, status="dead", claimed_by=None, claimed_until=None)


class DeadLettersContract:
    """Part of :class:`BusContract`: the dead-letter box keeps, lists, pages,
    retries and drops letters."""

    @pytest.mark.asyncio
    async def test_a_letter_is_kept_as_it_was_put(self, bus: Bus) -> None:
        letter = _letter("m1")
        box = await _box_with(bus, letter)

        assert await box.get(letter.letter_id) == letter
        assert await box.letters() == [letter]
        assert await box.count() == 1

    @pytest.mark.asyncio
    async def test_letters_come_oldest_first_and_filter_by_group_and_topic(self, bus: Bus) -> None:
        box = await _box_with(
            bus,
            _letter("late", minute=3),
            _letter("early", minute=1),
            _letter("shipping", group="shipping", minute=2),
            _letter("users", topic="users", minute=0),
        )

        assert _ids(await box.letters()) == ["users", "early", "shipping", "late"]
        assert _ids(await box.letters(group="billing")) == ["users", "early", "late"]
        assert _ids(await box.letters(topic="orders")) == ["early", "shipping", "late"]
        assert _ids(await box.letters(group="billing", topic="orders")) == ["early", "late"]
        assert await box.count(group="shipping") == 1
        assert await box.count() == 4
        assert await box.count(topic="orders") == 3
        assert await box.count(group="billing", topic="orders") == 2

    @pytest.mark.asyncio
    async def test_letters_of_the_same_moment_come_in_id_order(self, bus: Bus) -> None:
        box = await _box_with(bus, _letter("b"), _letter("c"), _letter("a"))

        assert _ids(await box.letters()) == ["a", "b", "c"]

    @pytest.mark.asyncio
    async def test_letters_page_on_after_the_last_one_seen(self, bus: Bus) -> None:
        box = await _box_with(bus, *(_letter(f"m{i}", minute=i) for i in range(5)))

        pages: list[list[str]] = []
        after: str | None = None
        while page := await box.letters(after=after, limit=2):
            pages.append(_ids(page))
            after = page[-1].letter_id

        assert pages == [["m0", "m1"], ["m2", "m3"], ["m4"]]

    @pytest.mark.asyncio
    async def test_putting_a_letter_again_replaces_it(self, bus: Bus) -> None:
        box = await _box_with(bus, _letter("m1"))
        again = _letter("m1", minute=5)

        await box.put(again)

        assert await box.letters() == [again]

    @pytest.mark.asyncio
    async def test_a_dropped_letter_is_gone(self, bus: Bus) -> None:
        box = await _box_with(bus, _letter("m1"), _letter("m2"))

        await box.drop(_letter("m1").letter_id)

        assert _ids(await box.letters()) == ["m2"]
        with pytest.raises(DeadLetterNotFound):
            await box.get(_letter("m1").letter_id)

    @pytest.mark.asyncio
    async def test_a_retry_marks_the_letter_and_its_group_claims_it_once(self, bus: Bus) -> None:
        box = await _box_with(
            bus, _letter("m1"), _letter("m2", minute=1), _letter("m3", group="shipping")
        )
        await box.request_retry(_letter("m2").letter_id)
        await box.request_retry(_letter("m3", group="shipping").letter_id)

        assert (await box.get(_letter("m2").letter_id)).status == "retry"
        claimed = await box.claim_retries("billing", "orders")

        assert _ids(claimed) == ["m2"]
        assert claimed[0].status == "claimed"
        assert await box.claim_retries("billing", "orders") == []
        assert _ids(await box.letters(group="billing")) == ["m1", "m2"]
        assert (await box.get(_letter("m1").letter_id)).status == "dead"
        assert await box.count(group="shipping") == 1

    @pytest.mark.asyncio
    async def test_claiming_retries_takes_at_most_the_limit_oldest_first(self, bus: Bus) -> None:
        letters = [_letter(f"m{i}", minute=i) for i in range(3)]
        box = await _box_with(bus, *letters)
        for letter in letters:
            await box.request_retry(letter.letter_id)

        assert _ids(await box.claim_retries("billing", "orders", limit=2)) == ["m0", "m1"]
        assert _ids(await box.claim_retries("billing", "orders", limit=2)) == ["m2"]

    @pytest.mark.asyncio
    async def test_a_letter_keyed_by_a_stream_id_is_kept(self, bus: Bus) -> None:
        # The NATS box could not encode a str subclass, the type of a store's stream ids.
        letter = msgspec.structs.replace(_letter("m1"), key=StreamId("account-1"))
        box = await _box_with(bus, letter)

        assert (await box.get(letter.letter_id)).key == "account-1"

    @pytest.mark.asyncio
    async def test_a_claimed_letter_stays_in_the_box_marked_with_its_holder(self, bus: Bus) -> None:
        letter = _letter("m1")
        box = await _box_with(bus, letter, _letter("m2", minute=1))
        await box.request_retry(letter.letter_id)
        before = datetime.now(UTC)

        (claimed,) = await box.claim_retries("billing", "orders", holder="member-1", lease=60.0)

        assert (claimed.status, claimed.claimed_by) == ("claimed", "member-1")
        assert claimed.claimed_until is not None
        assert claimed.claimed_until >= before + timedelta(seconds=60)
        assert _unclaimed(claimed) == letter
        assert await box.get(letter.letter_id) == claimed
        assert await box.letters() == [claimed, _letter("m2", minute=1)]
        assert await box.count() == 2
        # Under a live claim it is nobody else's, and asking for a retry again changes nothing.
        await box.request_retry(letter.letter_id)
        assert await box.claim_retries("billing", "orders", holder="member-2") == []
        assert await box.get(letter.letter_id) == claimed

    @pytest.mark.asyncio
    async def test_a_letter_whose_claimer_died_is_claimed_again_once_its_claim_ran_out(
        self, bus: Bus, make_bus: Connect
    ) -> None:
        letter = _letter("m1")
        await _box_with(bus, letter)
        await bus.dead_letters.request_retry(letter.letter_id)
        claimer = await make_bus()
        lease = 0.2
        (taken,) = await claimer.dead_letters.claim_retries(
            "billing", "orders", holder="doomed", lease=lease
        )
        if claimer is not bus:
            # The claimer goes without handling the letter or giving it back. (The memory
            # bus is one object for every handle: closing it would close the test's too.)
            await claimer.aclose()

        assert await bus.dead_letters.get(letter.letter_id) == taken
        assert taken.claimed_until is not None
        await asyncio.sleep(max(0.0, (taken.claimed_until - datetime.now(UTC)).total_seconds()))
        (again,) = await bus.dead_letters.claim_retries("billing", "orders", holder="heir")

        assert (again.status, again.claimed_by) == ("claimed", "heir")
        assert _unclaimed(again) == letter

    @pytest.mark.asyncio
    @pytest.mark.parametrize(
        "claim",
        [{"holder": "x" * 257}, {"lease": 0.0}, {"lease": -1.0}, {"lease": float("nan")}],
        ids=["long-holder", "zero-lease", "negative-lease", "nan-lease"],
    )
    async def test_a_bad_claim_is_refused_and_claims_nothing(
        self, bus: Bus, claim: dict[str, Any]
    ) -> None:
        letter = _letter("m1")
        box = await _box_with(bus, letter)
        await box.request_retry(letter.letter_id)

        with pytest.raises(InvalidInput):
            await box.claim_retries("billing", "orders", **claim)
        assert (await box.get(letter.letter_id)).status == "retry"

    @pytest.mark.parametrize("operation", ["get", "drop", "request_retry"])
    @pytest.mark.asyncio
    async def test_an_unknown_letter_id_is_not_found(self, bus: Bus, operation: str) -> None:
        box = await _box_with(bus, _letter("m1"))

        with pytest.raises(DeadLetterNotFound):
            await getattr(box, operation)("billing:orders:nope")
        assert await box.count() == 1

    @pytest.mark.asyncio
    async def test_letters_are_shared_by_every_handle_on_the_bus(
        self, bus: Bus, make_bus: Connect
    ) -> None:
        await _box_with(bus, _letter("m1"))
        other = await make_bus()

        assert _ids(await other.dead_letters.letters()) == ["m1"]

    @pytest.mark.asyncio
    async def test_a_letter_for_the_largest_message_a_subscriber_reads_is_kept_whole(
        self,
        bus: Bus,
    ) -> None:
        # On NATS such a letter is larger than one key-value entry may be (the server's
        # max_payload): it was refused, so its message was sent back for ever.
        body = bytes(range(256)) * (DEFAULT_MAX_MESSAGE_BYTES // 256)
        letter = msgspec.structs.replace(_letter("big"), body=body, reason="r" * 2000)
        small = _letter("small", minute=1)
        box = await _box_with(bus, letter, small)

        assert await box.get(letter.letter_id) == letter
        assert await box.letters() == [letter, small]
        await box.request_retry(letter.letter_id)
        assert (await box.get(letter.letter_id)).body == body
        (claimed,) = await box.claim_retries("billing", "orders", holder="h")
        assert _unclaimed(claimed) == letter
        assert await box.get(letter.letter_id) == claimed
        await box.drop(letter.letter_id)

        # Replaced by a small letter of the same id, and dropped: no trace of the body left.
        await box.put(letter)
        await box.put(msgspec.structs.replace(letter, body=b"{}"))
        assert (await box.get(letter.letter_id)).body == b"{}"
        await box.put(letter)
        await box.drop(letter.letter_id)
        assert await box.letters() == [small]
