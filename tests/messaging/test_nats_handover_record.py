"""The record one owner of a NATS partition leaves the next (``_handover``)."""

from __future__ import annotations

from eventcore.messaging.nats._handover import Handover, extra_attempts


def test_a_record_reads_back_as_written() -> None:
    record = Handover(clean=True, unseen={3: 1}, extra=[(1, 4, 1)], start=2)

    assert Handover.decode(record.encode()) == record


def test_unseen_counts_saved_by_an_older_eventcore_are_kept_but_not_trusted_as_clean() -> None:
    assert Handover.decode(b'{"5": 2}') == Handover(clean=False, unseen={5: 2})


def test_nothing_or_garbage_is_an_empty_record() -> None:
    assert Handover.decode(None) == Handover()
    assert Handover.decode(b"\xff not json") == Handover()


def test_a_restart_counts_one_more_delivery_for_what_the_old_consumer_delivered() -> None:
    before = Handover(unseen={7: 1}, extra=[(1, 4, 1), (3, 9, 1)])

    after = before.restarted(floor=4, delivered=12)

    assert after == Handover(clean=False, unseen={}, extra=[(3, 9, 1), (5, 12, 1)], start=5)
    assert [extra_attempts(after.extra, s) for s in (4, 5, 9, 10, 13)] == [1, 2, 2, 1, 0]


def test_taking_over_marks_the_record_held_and_forgets_what_was_acknowledged() -> None:
    record = Handover(clean=True, unseen={6: 1}, extra=[(1, 4, 1), (3, 9, 1)], start=3)

    assert record.taken(floor=5) == Handover(clean=False, unseen={6: 1}, extra=[(3, 9, 1)], start=3)
