"""Logs that carry the trace: a filter adding the current span's ids to each record, and
an opt-in JSON formatter writing one object per line, for log shippers.

::

    handler = logging.StreamHandler()
    handler.addFilter(TraceContextFilter())    # %(trace_id)s and %(span_id)s
    handler.setFormatter(JsonFormatter())      # or any format naming them
    logging.getLogger().addHandler(handler)

A filter goes on the handler, not on a logger: a logger's filters see only the records
logged on that very logger, a handler's see every record that reaches it.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import msgspec
from opentelemetry import trace

__all__ = ["JsonFormatter", "TraceContextFilter"]

#: What a record holds of its own; the rest came through ``extra=`` and is logged.
_RECORD_FIELDS = frozenset(
    vars(logging.LogRecord("", logging.INFO, "", 0, "", None, None)).keys()
    | {"message", "asctime", "taskName", "trace_id", "span_id"}
)


def _current_ids() -> tuple[str, str]:
    """The current span's trace and span ids in hex; empty outside any span."""
    span = trace.get_current_span().get_span_context()
    if not span.is_valid:
        return "", ""
    return f"{span.trace_id:032x}", f"{span.span_id:016x}"


class TraceContextFilter(logging.Filter):
    """Adds ``trace_id`` and ``span_id`` (hex, as trace backends show them; empty
    outside a span) to every record; it drops none. Runs where the record is made, so
    the ids are those of the code that logged, even when a queue handler formats the
    record later on another thread."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.trace_id, record.span_id = _current_ids()
        return True


class JsonFormatter(logging.Formatter):
    """Formats each record as one JSON object on one line: ``time`` (RFC 3339, UTC),
    ``level``, ``logger``, ``message``, ``trace_id`` and ``span_id`` when in a span,
    ``exception`` and ``stack`` when the record has them, and whatever the call passed
    in ``extra=`` (values JSON cannot hold are written as their ``str``).

    The ids are the ones ``TraceContextFilter`` put on the record, else the current
    span's."""

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="microseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        trace_id = getattr(record, "trace_id", None)
        span_id = getattr(record, "span_id", None)
        if trace_id is None or span_id is None:
            trace_id, span_id = _current_ids()
        if trace_id:
            fields["trace_id"] = trace_id
            fields["span_id"] = span_id
        if record.exc_info:
            fields["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            fields["exception"] = record.exc_text
        if record.stack_info:
            fields["stack"] = self.formatStack(record.stack_info)
        for key, value in vars(record).items():
            if key not in _RECORD_FIELDS and key not in fields:
                fields[key] = value
        try:
            return _encoder.encode(fields).decode()
        except _UNENCODABLE:
            # A value the hook cannot turn into JSON either (a list holding itself): the
            # line still goes out, that field as text.
            return _encoder.encode({key: _plain(value) for key, value in fields.items()}).decode()


_UNENCODABLE = (TypeError, ValueError, OverflowError, RecursionError)


def _text(value: object) -> str:
    return str(value)


def _plain(value: object) -> object:
    try:
        _encoder.encode(value)
    except _UNENCODABLE:
        return repr(value) if isinstance(value, list | dict) else str(value)
    return value


_encoder = msgspec.json.Encoder(enc_hook=_text)
