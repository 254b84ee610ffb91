"""The service's messaging contract: an AsyncAPI 3.0 document of the topics it
publishes (its topic map: which event types go where), the topics it consumes (its
subscriptions) and the commands it accepts over the bus. Payloads are the CloudEvents
envelope (``eventcore.messaging.envelope``) whose ``data`` is the type's JSON Schema."""

from __future__ import annotations

from typing import Any

import msgspec

from eventcore.messaging.commands import command_topic, command_type_of
from eventcore.service import Service
from eventcore.web.wire import schema_hook

__all__ = ["asyncapi"]

_REF = "#/components/schemas/{name}"


def _key(topic: str) -> str:
    # Channel and operation ids must be plain identifiers; topics hold dots.
    return "".join(ch if ch.isalnum() or ch in "_-" else "_" for ch in topic)


def _envelope(type_name: str, payload: str) -> dict[str, Any]:
    return {
        "name": type_name,
        "contentType": "application/cloudevents+json",
        "payload": {
            "type": "object",
            "required": ["specversion", "id", "source", "type", "data"],
            "properties": {
                "specversion": {"const": "1.0"},
                "id": {"type": "string"},
                "source": {"type": "string"},
                "type": {"const": type_name},
                "subject": {"type": "string"},
                "time": {"type": "string", "format": "date-time"},
                "data": {"$ref": _REF.format(name=payload)},
            },
        },
    }


def asyncapi(service: Service) -> dict[str, Any]:
    """The AsyncAPI 3 document of ``service``."""
    events = {kind.__event_type__: kind for kind in service.events}
    commands = {command_type_of(kind): kind for kind in service.bus_command_types.values()}
    _, schemas = msgspec.json.schema_components(
        [*events.values(), *commands.values()], ref_template=_REF, schema_hook=schema_hook
    )
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}

    published: dict[str, list[str]] = {}
    if service.topics is not None:
        for name in events:
            topic = service.topics.topic_for(name)
            if topic is not None:
                published.setdefault(topic, []).append(name)
    for topic, names in sorted(published.items()):
        key = _key(topic)
        channels[key] = {
            "address": topic,
            "messages": {n: {"$ref": f"#/components/messages/{n}"} for n in names},
        }
        operations[f"publish_{key}"] = {"action": "send", "channel": {"$ref": f"#/channels/{key}"}}
        for name in names:
            messages[name] = _envelope(name, events[name].__name__)
    for topic in sorted(set(service.consumed_topics)):
        key = _key(topic)
        channels.setdefault(key, {"address": topic, "messages": {}})
        operations[f"consume_{key}"] = {
            "action": "receive",
            "channel": {"$ref": f"#/channels/{key}"},
        }
    if commands:
        topic = command_topic(service.name)
        key = _key(topic)
        channels[key] = {
            "address": topic,
            "messages": {n: {"$ref": f"#/components/messages/{n}"} for n in commands},
        }
        operations[f"accept_{key}"] = {
            "action": "receive",
            "channel": {"$ref": f"#/channels/{key}"},
            "summary": "commands accepted over the bus; replies leave through the outbox",
        }
        for name, kind in commands.items():
            messages[name] = _envelope(name, kind.__name__)
    return {
        "asyncapi": "3.0.0",
        "info": {"title": service.name, "version": service.version},
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }
