"""The federation metrics after the hub, on two memory buses, read a source where one
rule routes every user event and another's transformation fails on one of them, an
event no rule takes and a message that is not an event: the counters per rule and
outcome match, the lag of the source is there, no label holds a message id, and
``promtool`` accepts the exposition."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from prometheus_client import generate_latest

from eventcore.federation import Hub
from eventcore.lifecycle import running
from eventcore.messaging import Bus, OutgoingMessage
from eventcore.messaging.envelope import encode_envelope
from eventcore.messaging.memory import MemoryBus
from eventcore.observability import PrometheusHooks
from tests.federation.samples import config, envelope, rule
from tests.observability.test_metrics import series, total
from tests.observability.test_metrics_operations import promtool, run_promtool
from tests.observability.workload import PATIENCE, fresh_metrics

__all__ = ["promtool"]  # a fixture, used by name

EVENTS = "eventcore_federation_events_total"
ROUTES = rule("users-to-billing", type="UserRegistered")
#: Fails on an event whose ``profile`` is not an object.
FRAGILE = rule(
    "profiles",
    type="UserRegistered",
    targets='[{ bus = "edge", topic = "profiles" }]',
    extra='transforms = [{ op = "drop", fields = ["profile.phone"] }]',
)
IDS = ("user-a", "user-b", "order-c", "junk")


@pytest.fixture
async def buses() -> AsyncIterator[dict[str, Bus]]:
    main, edge = MemoryBus(partitions=4), MemoryBus(partitions=4)
    yield {"main": main, "edge": edge}
    await main.aclose()
    await edge.aclose()


async def run_hub(buses: dict[str, Bus]) -> PrometheusHooks:
    events = [
        envelope(id="user-a", data={"email": "a@x.org", "profile": {"phone": "1"}}),
        envelope(id="user-b", data={"email": "b@x.org", "profile": 7}),
        envelope("OrderPlaced", id="order-c"),
    ]
    await buses["main"].publish(
        [OutgoingMessage("users", "junk", "k", b"not an event")]
        + [OutgoingMessage("users", e.id, e.subject, encode_envelope(e)) for e in events]
    )
    metrics = fresh_metrics()
    hub = Hub(config(ROUTES, FRAGILE), buses, hooks=metrics)
    async with running(hub), asyncio.timeout(PATIENCE):
        while hub.status().received < len(IDS):  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    return metrics


async def test_the_hub_counts_each_event_by_rule_and_outcome(buses: dict[str, Bus]) -> None:
    registry = (await run_hub(buses)).registry
    assert total(registry, EVENTS, rule="users-to-billing", outcome="routed") == 2
    assert total(registry, EVENTS, rule="profiles", outcome="routed") == 1
    assert total(registry, EVENTS, rule="profiles", outcome="failed") == 1
    assert total(registry, EVENTS, rule="", outcome="unmatched") == 1
    assert total(registry, EVENTS, rule="", outcome="invalid") == 1
    assert total(registry, EVENTS) == 6
    lags = [
        (name, labels)
        for name, labels in series(registry)
        if name == "eventcore_federation_lag_seconds"
    ]
    assert lags == [("eventcore_federation_lag_seconds", (("origin", "main/users"),))]
    assert total(registry, "eventcore_federation_lag_seconds", origin="main/users") >= 0


async def test_no_hub_label_takes_a_message_id_or_a_subject(buses: dict[str, Bus]) -> None:
    registry = (await run_hub(buses)).registry
    values = {value for _, labels in series(registry) for _, value in labels}
    assert values == {"users-to-billing", "profiles", "", "routed", "failed"} | {
        "unmatched",
        "invalid",
        "main/users",
    }
    assert not values & {*IDS, "user-1", "k"}


async def test_promtool_accepts_the_hub_families(buses: dict[str, Bus], promtool: str) -> None:
    metrics = await run_hub(buses)
    text = generate_latest(metrics.registry).decode()
    assert 'eventcore_federation_events_total{outcome="unmatched",rule=""} 1.0' in text
    problems = await asyncio.to_thread(run_promtool, promtool, "check", "metrics", text=text)
    assert problems.strip() == ""
