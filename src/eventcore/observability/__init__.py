"""Observability on the instrumentation seam: tracing (OpenTelemetry) and logs that
carry the trace. The only package that imports OpenTelemetry; nothing else in
eventcore knows about it. See ``docs/guides/observability.md``."""

from eventcore.observability.logs import JsonFormatter, TraceContextFilter
from eventcore.observability.tracing import OpenTelemetryHooks, tracing_hooks

__all__ = [
    "JsonFormatter",
    "OpenTelemetryHooks",
    "TraceContextFilter",
    "tracing_hooks",
]
