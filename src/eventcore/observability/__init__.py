"""Observability on the instrumentation seam (``eventcore.instrumentation``): tracing
(OpenTelemetry), logs that carry the trace, and Prometheus metrics. The only package
that imports OpenTelemetry or ``prometheus_client``; nothing else in eventcore knows
about them. See ``docs/guides/observability.md``.

The metrics names are imported when first used, so importing this package needs no
``metrics`` extra (tracing does without it); using one without ``prometheus-client``
installed raises ``MissingDependency``, which names the extra."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from eventcore.errors import MissingDependency
from eventcore.observability.logs import JsonFormatter, TraceContextFilter
from eventcore.observability.tracing import OpenTelemetryHooks, tracing_hooks

if TYPE_CHECKING:
    from eventcore.observability.exposition import MetricsServer, metrics_app, serve_metrics
    from eventcore.observability.metrics import METRIC_NAMES, PrometheusHooks, metrics_hooks

__all__ = [
    "METRIC_NAMES",
    "JsonFormatter",
    "MetricsServer",
    "OpenTelemetryHooks",
    "PrometheusHooks",
    "TraceContextFilter",
    "metrics_app",
    "metrics_hooks",
    "serve_metrics",
    "tracing_hooks",
]

#: Each lazily imported name → the module of this package that holds it.
_LAZY = {
    "METRIC_NAMES": "metrics",
    "PrometheusHooks": "metrics",
    "metrics_hooks": "metrics",
    "MetricsServer": "exposition",
    "metrics_app": "exposition",
    "serve_metrics": "exposition",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        found = importlib.import_module(f"{__name__}.{module}")
    except ImportError as error:
        raise MissingDependency.of(error, "Prometheus metrics") from error
    value: object = getattr(found, name)
    globals()[name] = value  # found once: later uses skip this function
    return value
