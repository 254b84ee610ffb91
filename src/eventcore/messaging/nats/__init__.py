"""The NATS JetStream message bus."""

from eventcore.messaging.nats.bus import NatsBus

__all__ = ["NatsBus"]
