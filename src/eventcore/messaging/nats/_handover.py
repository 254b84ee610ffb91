"""``Handover``: what one owner of a partition leaves the next, kept in the leases
bucket under ``{scope}.u.{p}``.

Every owner writes it twice: on taking the partition (``clean`` false: "I may hold
deliveries") and on giving it up in order (``clean`` true: everything it held was sent
back at once, in order, so JetStream delivers it again before anything later). A
record still saying ``clean`` false when the next owner comes means the last owner
died (or stalled past its lease) holding deliveries, which JetStream would only send
again after their ack wait while handing out later messages meanwhile; the next owner
then starts the partition's consumer again from its ack floor (``_consumer``).

A consumer started again counts deliveries from 1, so the record keeps what the
restarts took away: ``extra`` ranges of stream sequences, each adding its count to the
``attempt`` of every message in it (the dead owner had each of them at least once; it
may have seen some more often, or not at all if they were only buffered — an estimate,
and the subscriber never blames a message for deliveries it may not have seen).
"""

from __future__ import annotations

import msgspec

__all__ = ["Handover", "extra_attempts"]


class Handover(msgspec.Struct, frozen=True, kw_only=True):
    #: The last owner gave the partition up in order (see the module's text).
    clean: bool = False
    #: Deliveries of each sequence no application saw (sent back unread).
    unseen: dict[int, int] = {}
    #: ``(first, last, n)``: ``n`` more deliveries of every sequence in first..last,
    #: made by a consumer since started again.
    extra: list[tuple[int, int, int]] = []
    #: The stream sequence the partition's consumer starts at when (re)created; 0: the
    #: beginning of the topic.
    start: int = 0

    @staticmethod
    def decode(raw: bytes | None) -> Handover:
        if not raw:
            return Handover()
        # Written by an eventcore from before this record: the unseen counts alone, saved
        # on a handover. Whether anyone held the partition since is unknown: not clean.
        # (Tried first: as a record it would read as one with every field left out.)
        try:
            return Handover(unseen=_legacy.decode(raw))
        except msgspec.DecodeError:
            pass
        try:
            return _decoder.decode(raw)
        except msgspec.DecodeError:
            return Handover()

    def encode(self) -> bytes:
        return msgspec.json.encode(self)

    def taken(self, floor: int) -> Handover:
        """The record a new owner writes: from now on it may hold deliveries. Extra
        attempts of messages acknowledged (up to ``floor``) are no longer needed."""
        extra = [(first, last, n) for first, last, n in self.extra if last > floor]
        return msgspec.structs.replace(self, clean=False, extra=extra)

    def restarted(self, floor: int, delivered: int) -> Handover:
        """The record of a consumer started again after ``floor`` (every sequence up to
        it acknowledged) whose old self delivered up to ``delivered``."""
        extra = [(first, last, n) for first, last, n in self.extra if last > floor]
        if delivered > floor:
            extra.append((floor + 1, delivered, 1))
        return Handover(clean=False, unseen={}, extra=extra, start=floor + 1)

    def handed_over(self, *, clean: bool, unseen: dict[int, int]) -> Handover:
        return msgspec.structs.replace(self, clean=clean, unseen=unseen)


def extra_attempts(extra: list[tuple[int, int, int]], sequence: int) -> int:
    """The deliveries of ``sequence`` made before its consumer was started again."""
    return sum(n for first, last, n in extra if first <= sequence <= last)


_decoder = msgspec.json.Decoder(Handover)
_legacy = msgspec.json.Decoder(dict[int, int])
