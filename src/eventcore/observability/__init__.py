"""Observability on the instrumentation seam (``eventcore.instrumentation``): Prometheus
metrics (the ``metrics`` extra). The only package that imports ``prometheus_client``;
nothing else in eventcore knows it is there."""

from eventcore.observability.exposition import MetricsServer, metrics_app, serve_metrics
from eventcore.observability.metrics import METRIC_NAMES, PrometheusHooks, metrics_hooks

__all__ = [
    "METRIC_NAMES",
    "MetricsServer",
    "PrometheusHooks",
    "metrics_app",
    "metrics_hooks",
    "serve_metrics",
]
