"""The service workload n serves with ``eventcore serve``: one command that registers a
user under a fresh stream (one event, one append)."""

from __future__ import annotations

from eventcore import Command, CommandRejected, Event, EventRegistry, StreamId, Writes
from eventcore.service import Service

__all__ = ["Register", "Registered", "service"]


class Registered(Event):
    name: str


class Register(Command[bool]):
    user: StreamId
    name: str
    creates_streams = True

    def initial_state(self) -> bool:
        return False

    def apply(self, state: bool, stream_id: StreamId, event: Event) -> bool:
        return True

    def handle(self, state: bool) -> Writes:
        if state:
            raise CommandRejected(f"user {self.user} is registered already")
        return {self.user: [Registered(name=self.name)]}


service = Service("signup", events=EventRegistry([Registered]), commands=[Register])
