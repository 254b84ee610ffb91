"""Routing one event through the rules: the pure core of the hub.

Rules are tried in the order of the configuration; every rule that matches makes its
own copy (an event may go several ways), and a matching rule with ``stop`` ends the
evaluation. A rule whose transformations fail on the event yields a ``TransformFailed``
instead of a copy; the other rules are not affected.

A copy's id is derived from (rule name, original id) alone (``routed_id``), so a
redelivered event, or one routed again after a hub restart, gets the same id: the
target's de-duplication and inbox absorb the repeat. Renaming a rule therefore changes
its copies' ids. Correlation, causation and the trace context pass through unchanged;
``actor`` and ``metaextra`` stay behind; the ``federation*`` extension attributes say
which rule made the copy and where it came from.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import msgspec

from eventcore.errors import TransformFailed
from eventcore.federation.fields import StepFailed
from eventcore.federation.rules import Origin, Rule, RuleTarget
from eventcore.federation.transforms import Draft, Step
from eventcore.messaging.envelope import DistributedEvent
from eventcore.store.payload import MAX_PAYLOAD_DEPTH, nesting_problem, number_problem

__all__ = ["ROUTED_ID_NAMESPACE", "Routed", "Routing", "route", "routed_id"]

#: The UUIDv5 namespace of routed ids (a fixed value: changing it would change every id).
ROUTED_ID_NAMESPACE: Final = uuid.UUID("5b0c2f43-6f5e-4d0a-9a57-1c3f0e8d2a61")


_NAMESPACE_BYTES: Final = ROUTED_ID_NAMESPACE.bytes


def routed_id(rule: str, original_id: str) -> str:
    """The id of the copy ``rule`` makes of the event ``original_id``: the UUIDv5 of
    ``"{rule}\\n{original_id}"`` in ``ROUTED_ID_NAMESPACE``. Rule names hold no newline,
    so distinct pairs give distinct names."""
    # RFC 4122 section 4.3 by hand: uuid.uuid5 costs a third of routing a small event.
    name = f"{rule}\n{original_id}".encode("utf-8", "surrogatepass")
    digest = bytearray(hashlib.sha1(_NAMESPACE_BYTES + name).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # the RFC 4122 variant
    text = digest.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


@dataclass(frozen=True)
class Routed:
    """A copy one rule made, to publish to each of its targets."""

    rule: str
    targets: tuple[RuleTarget, ...]
    envelope: DistributedEvent


@dataclass(frozen=True)
class Routing:
    """What the rules made of one event."""

    #: Names of the rules that matched, in order (with a failed one among them).
    matched: tuple[str, ...]
    routed: tuple[Routed, ...]
    failed: tuple[TransformFailed, ...]
    #: The rule that ended the evaluation, if one did.
    stopped_by: str | None = None


_encoder = msgspec.json.Encoder()


def route(envelope: DistributedEvent, origin: Origin | None, rules: Sequence[Rule]) -> Routing:
    """The copies ``rules`` make of ``envelope``, read at ``origin``. With ``origin``
    None, each rule is taken to have read the event at its own source (what
    ``federate explain`` shows when not told where the event was read)."""
    matched: list[str] = []
    routed: list[Routed] = []
    failed: list[TransformFailed] = []
    for rule in rules:
        if not rule.matches(envelope, origin):
            continue
        matched.append(rule.name)
        try:
            routed.append(Routed(rule.name, rule.targets, _copy(envelope, origin, rule)))
        except TransformFailed as error:
            failed.append(error)
        if rule.stop:
            return Routing(tuple(matched), tuple(routed), tuple(failed), rule.name)
    return Routing(tuple(matched), tuple(routed), tuple(failed))


def _decode(envelope: DistributedEvent, rule: str) -> Any:
    try:
        return msgspec.json.decode(envelope.payload)
    except msgspec.DecodeError as error:  # a valid envelope's data always decodes
        raise TransformFailed(rule, "payload", f"not readable as JSON: {error}") from None


def _copy(envelope: DistributedEvent, origin: Origin | None, rule: Rule) -> DistributedEvent:
    # Only for a rule whose steps read the payload; decoded anew for each such rule (a
    # decode costs less than a deep copy), so one rule's edits never reach another's.
    reads = rule.reads_payload
    draft = Draft(
        type=envelope.type,
        source=envelope.source,
        data=_decode(envelope, rule.name) if reads else None,
        original=envelope,
    )
    for index, step in enumerate(rule.steps):
        try:
            step.apply(draft)
        except StepFailed as error:
            raise TransformFailed(rule.name, _step(index, step), str(error)) from None
        except Exception as error:  # a user function's bug fails this event, not the hub
            reason = f"{type(error).__name__}: {error}"
            raise TransformFailed(rule.name, _step(index, step), reason) from error
    data = msgspec.Raw(_payload(draft, rule.name)) if reads else envelope.data
    for name in ("type", "source"):
        value = getattr(draft, name)
        if not isinstance(value, str) or not value:
            raise TransformFailed(rule.name, name, f"must be non-empty text, got {value!r}")
    return msgspec.structs.replace(
        envelope,
        id=routed_id(rule.name, envelope.id),
        type=draft.type,
        source=draft.source,
        data=data,
        # Who acted, and the metadata's free-form fields, are the source domain's and
        # may well be personal data: no rule's steps reach them, so they stay behind.
        actor=None,
        metaextra=None,
        federationrule=rule.name,
        federationid=envelope.id,
        federationsource=envelope.source,
        federationtype=envelope.type,
        # Where the rule reads: the origin itself, whenever one was given.
        federationorigin=rule.origin_text,
    )


def _step(index: int, step: Step) -> str:
    return f"transforms[{index}] ({step.describe()})"


def _payload(draft: Draft, rule: str) -> bytes:
    """The transformed payload as JSON, held to what a store keeps and a reader reads."""
    try:
        body = _encoder.encode(draft.data)
    except (TypeError, ValueError, OverflowError) as error:
        raise TransformFailed(rule, "payload", f"not encodable as JSON: {error}") from None
    problem = nesting_problem(body, MAX_PAYLOAD_DEPTH) or number_problem(body)
    if problem is not None:
        raise TransformFailed(rule, "payload", f"not a payload a reader would take: {problem}")
    return body
