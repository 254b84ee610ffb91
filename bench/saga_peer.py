"""The peer column of (m): the same 3-step saga on the ``natsaga`` package (NATS JetStream +
PostgreSQL), run in a subprocess of its own.

natsaga pins versions of pydantic, SQLAlchemy and asyncpg that eventcore's environment does
not carry, so it is installed apart, into a directory put first on the subprocess's path:

    pip install --target .bench-peers/natsaga natsaga        # or set NATSAGA_PATH

    python bench/saga_peer.py tp|lat <postgres url> <schema> <nats url> <prefix> <sizes json>

prints one JSON object: ``{"value": ..., "facts": {...}}``.

What runs (natsaga 0.2.0's documented contract): a ``SagaOrchestrator`` with the saga
registered, its ``SagaListener`` (durable push consumers on ``<action>.response.>``) and
nats-outbox's ``PollingRelay`` (the outbox table → JetStream; ``polling_interval`` 0.02 s,
batch 100, where the default 1 s would put up to a second on every hop). Each participant
is a durable JetStream push consumer of its two subjects that records the effect in its
own PostgreSQL table (one transaction) and then publishes the response to
``<action>.response.<saga id>.<step>`` with a JetStream publish. All in this one process,
one event loop. Completion time is ``saga_state.updated_at`` of the completing transaction
(server clock, same machine), read by polling.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent
DEFAULT_PATH = _HERE.parent / ".bench-peers" / "natsaga"


def peer_path() -> Path:
    return Path(os.environ.get("NATSAGA_PATH", DEFAULT_PATH))


def unavailable() -> str | None:
    """Why the peer cannot run here (None when it can)."""
    path = peer_path()
    if not (path / "natsaga").is_dir() or not (path / "nats_outbox").is_dir():
        return (
            f"natsaga is not installed at {path} (pip install --target {path} natsaga; it "
            "needs versions of pydantic/SQLAlchemy/asyncpg apart from eventcore's environment)"
        )
    return None


PARTICIPANTS = ("inventory", "payments", "shipping")
VERBS = (("reserve", "release"), ("charge", "refund"), ("ship", "cancel"))


async def _main(
    mode: str, pg_url: str, schema: str, nats_url: str, prefix: str, sizes: dict[str, int]
) -> dict[str, Any]:
    import asyncpg  # type: ignore[import-not-found]
    import nats  # type: ignore[import-not-found]
    from nats.js.api import StreamConfig  # type: ignore[import-not-found]
    from nats_outbox.core.models import Base as OutboxBase  # type: ignore[import-not-found]
    from nats_outbox.publishers.nats_publisher import NatsPublisher  # type: ignore[import-not-found]
    from nats_outbox.relay.polling import PollingRelay  # type: ignore[import-not-found]
    from nats_outbox.settings import OutboxSettings  # type: ignore[import-not-found]
    from natsaga.core.models import Base as SagaBase  # type: ignore[import-not-found]
    from natsaga.core.saga import Saga  # type: ignore[import-not-found]
    from natsaga.core.step import Step  # type: ignore[import-not-found]
    from natsaga.listener import SagaListener  # type: ignore[import-not-found]
    from natsaga.orchestrator import SagaOrchestrator  # type: ignore[import-not-found]
    from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine  # type: ignore[import-not-found]

    dsn = pg_url.replace("postgresql://", "postgresql+asyncpg://", 1)
    engine = create_async_engine(
        dsn, pool_size=20, connect_args={"server_settings": {"search_path": schema}}
    )
    async with engine.begin() as conn:
        await conn.run_sync(OutboxBase.metadata.create_all)
        await conn.run_sync(SagaBase.metadata.create_all)
    sessions = async_sessionmaker(engine, expire_on_commit=False)

    def subject(service: str, verb: str) -> str:
        return f"{prefix}.{service}.{verb}"

    class PlaceOrder(Saga):  # type: ignore[misc]
        saga_type = "place_order"

        @classmethod
        def steps(cls) -> list[Any]:
            return [
                Step(
                    name=act,
                    action_subject=subject(service, act),
                    compensation_subject=subject(service, undo),
                    timeout_seconds=30,
                )
                for service, (act, undo) in zip(PARTICIPANTS, VERBS, strict=True)
            ]

    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    commands, responses = f"{prefix}_CMDS", f"{prefix}_RESP"
    await js.add_stream(StreamConfig(name=commands, subjects=[f"{prefix}.*.*"]))
    await js.add_stream(StreamConfig(name=responses, subjects=[f"{prefix}.*.*.response.>"]))

    pool = await asyncpg.create_pool(
        pg_url, min_size=3, max_size=10, server_settings={"search_path": schema}
    )
    async with pool.acquire() as conn:
        for service in PARTICIPANTS:
            await conn.execute(
                f"CREATE TABLE {service}_effects (saga_id text, step int, verb text, "
                "PRIMARY KEY (saga_id, step, verb))"
            )

    def participant(service: str, verb: str) -> Any:
        async def handle(msg: Any) -> None:
            body = json.loads(msg.data)
            saga_id, step = body["saga_id"], body["step_index"]
            async with pool.acquire() as conn:
                await conn.execute(
                    f"INSERT INTO {service}_effects VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                    saga_id,
                    step,
                    verb,
                )
            reply = {"outcome": "success", "result": {"ref": f"{verb}-{saga_id}"}}
            await js.publish(f"{msg.subject}.response.{saga_id}.{step}", json.dumps(reply).encode())
            await msg.ack()

        return handle

    subs = []
    for service, verbs in zip(PARTICIPANTS, VERBS, strict=True):
        for verb in verbs:
            subs.append(
                await js.subscribe(
                    subject(service, verb),
                    stream=commands,
                    durable=f"{prefix}_{service}_{verb}",
                    cb=participant(service, verb),
                    manual_ack=True,
                )
            )

    orchestrator = SagaOrchestrator(sessions)
    orchestrator.register(PlaceOrder)
    listener = SagaListener(js, orchestrator, responses)
    await listener.subscribe_all()
    settings = OutboxSettings(
        database_url=dsn, nats_url=nats_url, polling_interval=0.02, batch_size=100
    )
    relay = PollingRelay(sessions, NatsPublisher(js), settings)
    relay_task = asyncio.create_task(relay.start())

    started: dict[str, float] = {}

    async def start(n: str) -> None:
        saga_id = uuid.uuid4()
        started[str(saga_id)] = time.time()
        await orchestrator.start(PlaceOrder, {"order": n, "amount": 100}, saga_id=saga_id)

    async def ended(ids: set[str], timeout: float) -> dict[str, tuple[float, str]]:  # noqa: ASYNC109
        found: dict[str, tuple[float, str]] = {}
        give_up = time.monotonic() + timeout
        while len(found) < len(ids) and time.monotonic() < give_up:
            async with pool.acquire() as conn:
                rows = await conn.fetch(
                    "SELECT id::text, extract(epoch from updated_at), status FROM saga_state "
                    "WHERE status NOT IN ('running', 'compensating')"
                )
            for saga_id, at, status in rows:
                if saga_id in ids:
                    found[saga_id] = (float(at), status)
            await asyncio.sleep(0.05)
        return found

    async def burst(count: int) -> tuple[float, int]:
        before = set(started)
        began = time.time()
        await asyncio.gather(*(start(f"b{n}") for n in range(count)))
        ids = set(started) - before
        done = await ended(ids, 120.0)
        completed = [at for at, status in done.values() if status == "completed"]
        return (max(completed) - began if completed else float("inf")), len(completed)

    facts: dict[str, str] = {}
    try:
        await burst(10)  # warm-up
        count = sizes["saga_burst"] if mode == "tp" else min(sizes["saga_burst"], 200)
        seconds, completed = await burst(count)
        if mode == "tp":
            value = completed / seconds
            facts["completed"] = f"{completed}/{count} in {seconds:.2f}s"
        else:
            rate = min(float(sizes["saga_rate"]), completed / seconds / 2)
            before = set(started)
            began = time.monotonic()
            tasks = []
            for n in range(sizes["saga_paced"]):
                delay = began + n / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(start(f"p{n}")))
            await asyncio.gather(*tasks)
            ids = set(started) - before
            done = await ended(ids, 120.0)
            took = sorted(
                (at - started[i]) * 1000
                for i, (at, status) in done.items()
                if status == "completed"
            )
            value = took[min(len(took) - 1, int(len(took) * 0.99))]
            facts["rate"] = f"{rate:.0f}/s"
            facts["p50"] = f"{statistics.median(took):.0f} ms"
            facts["completed"] = f"{len(took)}/{len(ids)}"
    finally:
        await relay.stop()
        relay_task.cancel()
        await listener.stop()
        for sub in subs:
            await sub.unsubscribe()
        for name in (commands, responses):
            await js.delete_stream(name)
        await nc.close()
        await pool.close()
        await engine.dispose()
    return {"value": value, "facts": facts}


if __name__ == "__main__":
    sys.path.insert(0, str(peer_path()))
    mode, pg_url, schema, nats_url, prefix, sizes = sys.argv[1:7]
    result = asyncio.run(_main(mode, pg_url, schema, nats_url, prefix, json.loads(sizes)))
    print(json.dumps(result), flush=True)
