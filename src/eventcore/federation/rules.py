"""A routing rule, as loaded from the hub's configuration (``eventcore.federation.config``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from eventcore.federation.matcher import TypePattern
from eventcore.federation.transforms import Step
from eventcore.messaging.envelope import DistributedEvent

__all__ = ["Origin", "Rule", "RuleSource", "RuleTarget"]


@dataclass(frozen=True)
class Origin:
    """Where the hub read an event: a bus (by its alias in the configuration) and a topic."""

    bus: str
    topic: str

    def __str__(self) -> str:
        return f"{self.bus}/{self.topic}"


@dataclass(frozen=True)
class RuleSource:
    """What a rule reads: a topic of a bus, and optionally only one service's events
    (the envelope's ``source``)."""

    bus: str
    topic: str
    service: str | None = None

    @property
    def origin(self) -> Origin:
        return Origin(self.bus, self.topic)


@dataclass(frozen=True)
class RuleTarget:
    bus: str
    topic: str

    def __str__(self) -> str:
        return f"{self.bus}/{self.topic}"


@dataclass(frozen=True)
class Rule:
    name: str
    source: RuleSource
    pattern: TypePattern
    targets: tuple[RuleTarget, ...]
    steps: tuple[Step, ...] = ()
    #: When this rule matches, the rules after it are not tried.
    stop: bool = False
    #: Whether a step reads the payload (else it passes byte for byte, undecoded).
    reads_payload: bool = field(init=False, repr=False, compare=False)
    #: ``<bus>/<topic>`` of the source, as copies carry it.
    origin_text: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Worked out once: routing asks for them on every event.
        object.__setattr__(self, "reads_payload", any(s.reads_payload for s in self.steps))
        object.__setattr__(self, "origin_text", str(self.source.origin))

    def matches(self, envelope: DistributedEvent, origin: Origin | None) -> bool:
        """Whether this rule takes ``envelope``, read at ``origin`` (None: wherever
        the rule reads, as ``federate explain`` asks without ``--origin``)."""
        source = self.source
        return (
            (origin is None or (source.topic == origin.topic and source.bus == origin.bus))
            and (source.service is None or source.service == envelope.source)
            and self.pattern.matches(envelope.type)
        )
