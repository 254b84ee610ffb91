"""The operations kit holds: ``promtool check metrics`` accepts what a running service
serves (over HTTP from ``serve_metrics``, and from the ASGI app), ``promtool`` accepts
the shipped alerting rules and their unit tests, and the Grafana dashboard queries only
metrics that exist."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from eventcore.observability import METRIC_NAMES, metrics_app, serve_metrics
from tests.backends import skip_or_fail
from tests.observability.workload import fresh_metrics, running_service

OPERATIONS = Path(__file__).resolve().parents[2] / "docs" / "operations"
#: What a histogram family shows besides its name.
HISTOGRAM_SERIES = ("_bucket", "_count", "_sum")


@pytest.fixture
def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        skip_or_fail(
            "promtool is not installed (Debian: apt-get install prometheus)",
            "the metrics and alerting rules must be checked",
        )
    return found


def run_promtool(promtool: str, *args: str, text: str | None = None) -> str:
    done = subprocess.run(
        [promtool, *args],
        input=text,
        capture_output=True,
        text=True,
        cwd=OPERATIONS,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, f"promtool {' '.join(args)}: {done.stdout}{done.stderr}"
    return done.stdout + done.stderr


async def test_promtool_accepts_what_serve_metrics_serves(tmp_path: Path, promtool: str) -> None:
    metrics = fresh_metrics()
    async with running_service(metrics, tmp_path):
        server = serve_metrics(0, registry=metrics.registry)
        try:
            async with httpx.AsyncClient() as client:
                response = await client.get(f"http://127.0.0.1:{server.port}/metrics")
        finally:
            await asyncio.to_thread(server.close)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "eventcore_commands_total" in response.text
    problems = await asyncio.to_thread(
        run_promtool, promtool, "check", "metrics", text=response.text
    )
    assert problems.strip() == ""


async def test_promtool_accepts_what_the_asgi_app_serves(tmp_path: Path, promtool: str) -> None:
    metrics = fresh_metrics()
    async with running_service(metrics, tmp_path, backend="memory"):
        transport = httpx.ASGITransport(app=metrics_app(metrics.registry))
        async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
            response = await client.get("/metrics")
    assert response.status_code == 200
    assert "eventcore_consumer_lag_events" in response.text
    problems = await asyncio.to_thread(
        run_promtool, promtool, "check", "metrics", text=response.text
    )
    assert problems.strip() == ""


def test_promtool_accepts_the_alerting_rules(promtool: str) -> None:
    output = run_promtool(promtool, "check", "rules", "alerts.yml")
    assert "SUCCESS" in output


def test_the_alerts_fire_when_their_unit_tests_say(promtool: str) -> None:
    output = run_promtool(promtool, "test", "rules", "alerts.test.yml")
    assert "SUCCESS" in output


def test_the_alerting_rules_cover_lag_dead_letters_the_relay_and_errors() -> None:
    text = (OPERATIONS / "alerts.yml").read_text(encoding="utf-8")
    alerts = set(re.findall(r"alert: (\w+)", text))
    assert {
        "EventcoreConsumerLagGrowing",
        "EventcoreDeadLettersRising",
        "EventcoreRelayStuck",
        "EventcoreCommandErrorRate",
    } <= alerts


def family_of(series: str) -> str:
    if series in METRIC_NAMES:
        return series
    for suffix in HISTOGRAM_SERIES:
        if series.endswith(suffix) and series.removesuffix(suffix) in METRIC_NAMES:
            return series.removesuffix(suffix)
    return series


def queried(text: str) -> set[str]:
    return set(re.findall(r"\beventcore_[a-z_]+", text))


def dashboard_queries() -> list[str]:
    dashboard = json.loads((OPERATIONS / "grafana-dashboard.json").read_text(encoding="utf-8"))
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    assert exprs, "the dashboard has no queries"
    return exprs


def test_the_dashboard_queries_only_metrics_that_exist() -> None:
    unknown = {
        name
        for expr in dashboard_queries()
        for name in queried(expr)
        if family_of(name) not in METRIC_NAMES
    }
    assert unknown == set()


def test_the_dashboard_reads_histograms_through_their_series() -> None:
    histograms = {"eventcore_command_duration_seconds", "eventcore_append_batch_size"}
    for expr in dashboard_queries():
        for name in queried(expr):
            # A histogram is read through its series, never by its bare name.
            assert name not in histograms, expr


def test_the_dashboard_shows_every_metric() -> None:
    shown = {family_of(name) for expr in dashboard_queries() for name in queried(expr)}
    assert set(METRIC_NAMES) - shown == set()


def test_the_alerting_rules_query_only_metrics_that_exist() -> None:
    text = (OPERATIONS / "alerts.yml").read_text(encoding="utf-8")
    exprs = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    # Annotations name metrics too: every name anywhere in the file must exist.
    assert {name for name in queried(exprs) if family_of(name) not in METRIC_NAMES} == set()
