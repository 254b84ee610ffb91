"""What the hub makes of one batch (or one round of retried letters): the copies to
publish, by target bus, the dead letters to park, and the counts by rule and outcome.
Pure: the hub does the publishing, parking and acknowledging."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

from eventcore.errors import InvalidMessage
from eventcore.federation.routing import route
from eventcore.federation.rules import Origin, Rule
from eventcore.messaging.bus import DeadLetter, Delivery, OutgoingMessage
from eventcore.messaging.envelope import decode_envelope, encode_envelope

__all__ = ["Batch"]

#: The longest reason a letter keeps (several rules may fail on one event).
MAX_REASON_CHARS = 2000


class Batch:
    """Messages read at ``origin``, routed by ``rules`` (those that read there)."""

    def __init__(self, group: str, origin: Origin, rules: tuple[Rule, ...], max_bytes: int) -> None:
        self._group = group
        self._origin = origin
        self._rules = rules
        self._max_bytes = max_bytes
        #: Copies to publish, by target bus alias, in the order their events came.
        self.outgoing: dict[str, list[OutgoingMessage]] = {}
        self.letters: list[DeadLetter] = []
        self.outcomes: Counter[tuple[str, str]] = Counter()
        self.copies = 0
        self.unmatched = 0

    def add(self, message: Delivery | DeadLetter, attempt: int) -> None:
        """Route one message (a delivery, or a letter taken back): its copies, or its
        letter (``attempt`` deliveries so far), and its outcomes."""
        outcomes = self.outcomes
        try:
            envelope = decode_envelope(message.body, max_bytes=self._max_bytes)
        except InvalidMessage as error:
            self.letters.append(self._letter(message, str(error), type(error).__name__, attempt))
            outcomes["", "invalid"] += 1
            return
        routing = route(envelope, self._origin, self._rules)
        if not routing.matched:
            self.unmatched += 1
            outcomes["", "unmatched"] += 1
            return
        for copy in routing.routed:
            encoded = encode_envelope(copy.envelope)
            for target in copy.targets:
                self.outgoing.setdefault(target.bus, []).append(
                    # Keyed by the stream: its copies stay in one target partition.
                    OutgoingMessage(target.topic, copy.envelope.id, envelope.subject, encoded)
                )
            outcomes[copy.rule, "routed"] += 1
            self.copies += 1
        if routing.failed:
            reason = "; ".join(str(failure) for failure in routing.failed)
            self.letters.append(self._letter(message, reason, "TransformFailed", attempt))
            for failure in routing.failed:
                outcomes[failure.rule, "failed"] += 1

    def _letter(
        self, message: Delivery | DeadLetter, reason: str, error_type: str, attempts: int
    ) -> DeadLetter:
        if len(reason) > MAX_REASON_CHARS:
            reason = reason[: MAX_REASON_CHARS - 1] + "…"
        return DeadLetter(
            letter_id=DeadLetter.id_for(self._group, message.topic, message.message_id),
            group=self._group,
            topic=message.topic,
            message_id=message.message_id,
            key=message.key,
            body=message.body,
            reason=reason,
            error_type=error_type,
            attempts=attempts,
            failed_at=datetime.now(UTC),
        )
