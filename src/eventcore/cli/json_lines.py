"""What ``--json`` prints: one JSON object per line on stdout, for scripts.

Field names are those of the library's own types and do not change between releases
(new fields may be added). Times are ISO 8601 in UTC to the microsecond, e.g.
``"2026-11-26T13:46:56.123456Z"``. A payload or body that is JSON is embedded as JSON
under ``data`` / ``body``; any other bytes go base64-encoded under ``data_base64`` /
``body_base64`` instead (as CloudEvents does). Notes such as "no streams" still go to
stderr, so stdout holds nothing but records.

* ``streams list``: ``stream_id``, ``version``, ``last_position``.
* ``streams show``, ``events tail``: ``position``, ``stream_id``, ``version``,
  ``event_id``, ``type``, ``schema_version``, ``recorded_at``, ``metadata`` (the fields
  that are set: ``correlation_id``, ``causation_id``, ``traceparent``, ``tracestate``,
  ``actor``, ``extra``), then ``data`` or ``data_base64``.
* ``projections list``: ``name``, ``version``, ``state``, ``tables``, ``created_at``,
  ``sources`` (each ``source``, ``position``, ``events``), ``events``.
* ``projections status``: one per source of each version: ``name``, ``version``,
  ``state``, ``source`` (null for a version with no checkpoint yet), ``position``,
  ``lag`` (null without ``--store``), ``events``, ``events_per_second``, ``updated_at``.
* ``dlq list``: ``letter_id``, ``group``, ``topic``, ``message_id``, ``key``, ``status``,
  ``attempts``, ``failed_at``, ``error_type``, ``reason``, ``event_type`` (null when
  the body is not an eventcore envelope); ``dlq show`` adds ``body`` or ``body_base64``.
* ``sagas list``: ``saga_type``, ``saga_id``, ``status``, ``stream``, ``started_at``,
  ``ended_at`` (null while open), ``step`` and ``phase`` (what it waits on or undoes
  next, null once ended), ``stuck_reason``, ``events``.
* ``sagas show``: ``saga_type``, ``saga_id``, ``status``, ``started_at``, ``ended_at``,
  ``duration`` (seconds), ``data``, ``stuck_reason``, ``steps`` (each ``name``,
  ``status``, ``compensable``, ``attempts`` — each ``phase``, ``attempt``,
  ``correlation_id``, ``requested_at``, ``outcome``, ``ended_at``, ``duration``,
  ``reason``, ``retry_at`` —, ``late_replies``, ``result``) and ``timeline`` (each
  ``at``, ``event``, ``step``, ``detail``). A saga's times are stored as seconds since
  the epoch and printed as the times above.
* ``services list``: ``service``, ``instance_id``, ``address``, ``version``,
  ``metadata`` (an object of text values).
"""

from __future__ import annotations

import base64
import json
import sys
from datetime import UTC, datetime
from typing import Any

import msgspec

from eventcore.messaging.bus import DeadLetter
from eventcore.projection.target import SourceProgress, VersionInfo
from eventcore.registry import Instance
from eventcore.saga import SagaSummary, SagaView
from eventcore.types import StoredEvent, StreamHead

__all__ = [
    "emit",
    "event_record",
    "instance_record",
    "letter_record",
    "progress_record",
    "saga_record",
    "saga_view_record",
    "stream_record",
    "version_record",
]


def emit(record: dict[str, Any]) -> None:
    """Print ``record`` as one line. ASCII only: any terminal or pipe can carry it.
    Flushed at once, so a script reading ``events tail --follow --json`` sees each event
    as it comes."""
    sys.stdout.write(json.dumps(record, ensure_ascii=True, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def instance_record(instance: Instance) -> dict[str, Any]:
    return {
        "service": instance.service,
        "instance_id": instance.instance_id,
        "address": instance.address,
        "version": instance.version,
        "metadata": dict(instance.metadata),
    }


def stream_record(head: StreamHead) -> dict[str, Any]:
    return {
        "stream_id": str(head.stream_id),
        "version": head.version,
        "last_position": head.last_position,
    }


def event_record(event: StoredEvent) -> dict[str, Any]:
    record: dict[str, Any] = {
        "position": event.position,
        "stream_id": str(event.stream_id),
        "version": event.version,
        "event_id": str(event.event_id),
        "type": event.type,
        "schema_version": event.schema_version,
        "recorded_at": _time(event.recorded_at),
        "metadata": msgspec.to_builtins(event.metadata),
    }
    record.update(_bytes("data", event.data))
    return record


def letter_record(
    letter: DeadLetter, event_type: str | None, *, body: bool = False
) -> dict[str, Any]:
    record: dict[str, Any] = {
        "letter_id": letter.letter_id,
        "group": letter.group,
        "topic": letter.topic,
        "message_id": letter.message_id,
        "key": letter.key,
        "status": letter.status,
        "claimed_by": letter.claimed_by,
        "claimed_until": None if letter.claimed_until is None else _time(letter.claimed_until),
        "attempts": letter.attempts,
        "failed_at": _time(letter.failed_at),
        "error_type": letter.error_type,
        "reason": letter.reason,
        "event_type": event_type,
    }
    if body:
        record.update(_bytes("body", letter.body))
    return record


def version_record(info: VersionInfo, progress: list[SourceProgress]) -> dict[str, Any]:
    return {
        "name": info.name,
        "version": info.version,
        "state": info.state,
        "tables": list(info.tables),
        "created_at": _time(datetime.fromtimestamp(info.created_at, UTC)),
        "sources": [
            {"source": p.source, "position": p.position, "events": p.events} for p in progress
        ],
        "events": sum(p.events for p in progress),
    }


def progress_record(
    info: VersionInfo, progress: SourceProgress | None, lag: int | None
) -> dict[str, Any]:
    return {
        "name": info.name,
        "version": info.version,
        "state": info.state,
        "source": progress.source if progress else None,
        "position": progress.position if progress else 0,
        "lag": lag,
        "events": progress.events if progress else 0,
        "events_per_second": progress.events_per_second if progress else 0.0,
        "updated_at": (
            _time(datetime.fromtimestamp(progress.updated_at, UTC)) if progress else None
        ),
    }


#: The fields of a saga's records that are times (seconds since the epoch in the store).
_SAGA_TIMES = frozenset(
    {"at", "started_at", "ended_at", "requested_at", "retry_at", "deadline_at", "timeout_at"}
)


def saga_record(summary: SagaSummary) -> dict[str, Any]:
    record: dict[str, Any] = _saga_times(msgspec.to_builtins(summary))
    return record


def saga_view_record(view: SagaView) -> dict[str, Any]:
    # Without the folded state: everything it holds is in the view, in an operator's terms.
    record: dict[str, Any] = _saga_times(msgspec.to_builtins(view))
    record.pop("state", None)
    return record


def _saga_times(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            key: (
                _time(datetime.fromtimestamp(item, UTC))
                if key in _SAGA_TIMES and isinstance(item, int | float)
                else _saga_times(item)
            )
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [_saga_times(item) for item in value]
    return value


def _time(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _bytes(name: str, data: bytes) -> dict[str, Any]:
    try:
        return {name: json.loads(data, parse_constant=_not_json)}
    except (ValueError, RecursionError):  # not UTF-8, not JSON, or nested past the stack
        return {f"{name}_base64": base64.b64encode(data).decode("ascii")}


def _not_json(constant: str) -> Any:
    # Python reads NaN and Infinity, which JSON has not: such a payload is carried as bytes.
    raise ValueError(constant)
