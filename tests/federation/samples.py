"""Events and configurations the federation tests route: built small, one per need."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec

from eventcore.federation import HubConfig, parse_config
from eventcore.messaging.envelope import DistributedEvent

#: Keys for ``hash`` and ``tokenize``, as the environment gives them.
KEY = "k" * 32
OTHER_KEY = "o" * 32
ENVIRON = {"HUB_KEY": KEY, "HUB_OTHER_KEY": OTHER_KEY}
BUSES = '[buses]\nmain = "memory://"\nedge = "memory://"\n'


def envelope(
    type: str = "UserRegistered",
    data: Any = None,
    *,
    source: str = "users",
    id: str = "event-1",
    **changes: Any,
) -> DistributedEvent:
    payload = {"name": "Ada", "email": "ada@example.com"} if data is None else data
    return DistributedEvent(
        specversion="1.0",
        datacontenttype="application/json",
        id=id,
        source=source,
        type=type,
        subject="user-1",
        time=datetime(2026, 12, 3, 10, 0, tzinfo=UTC),
        data=msgspec.Raw(msgspec.json.encode(payload)),
        streamversion="3",
        **changes,
    )


def rule(
    name: str,
    *,
    type: str = "**",
    topic: str = "users",
    targets: str = '[{ bus = "edge", topic = "billing" }]',
    extra: str = "",
) -> str:
    """One ``[[rules]]`` table of a configuration."""
    return (
        f'[[rules]]\nname = "{name}"\nsource = {{ bus = "main", topic = "{topic}" }}\n'
        f'type = "{type}"\ntargets = {targets}\n{extra}\n'
    )


def config(*rules: str, environ: dict[str, str] | None = None) -> HubConfig:
    return parse_config(BUSES + "".join(rules), file="hub.toml", environ=environ or ENVIRON)


def data_of(event: DistributedEvent) -> Any:
    return msgspec.json.decode(event.payload)
