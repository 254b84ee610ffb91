"""A routing rule, as loaded from the hub's configuration (``eventcore.federation.config``)."""

from __future__ import annotations

from dataclasses import dataclass

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

    def matches(self, envelope: DistributedEvent, origin: Origin | None) -> bool:
        """Whether this rule takes ``envelope``, read at ``origin`` (None: wherever
        the rule reads, as ``federate explain`` asks without ``--origin``)."""
        source = self.source
        return (
            (origin is None or (source.topic == origin.topic and source.bus == origin.bus))
            and (source.service is None or source.service == envelope.source)
            and self.pattern.matches(envelope.type)
        )
