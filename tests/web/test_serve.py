"""``eventcore serve`` as a real process on SQLite, driven over HTTP with httpx: every
endpoint, idempotency across requests, a clean stop on SIGTERM that publishes what was
committed, and SIGTERM under load from 64 clients that leaves nothing half-done."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import uuid
from pathlib import Path

import httpx
import pytest

from eventcore.demo.bank import Deposited, Withdrawn, registry
from eventcore.messaging import open_bus
from eventcore.store import open_store
from tests.backends import POSTGRES_URL, skip_or_fail
from tests.web.serving import BANK, EVENTCORE, environment, serving


def urls(tmp_path: Path) -> tuple[str, str, str, str]:
    store, bus = f"sqlite:///{tmp_path / 'bank.db'}", f"sqlite:///{tmp_path / 'bus.db'}"
    return "--store", store, "--bus", bus


#: An operator's key for the tests that serve with authentication on.
OPS_KEY = "ops-key-0123456789abcdef"
OPS = {"Authorization": f"Bearer {OPS_KEY}"}


def test_every_endpoint_answers_and_a_repeated_key_writes_once(tmp_path: Path) -> None:
    keys = {"EVENTCORE_API_KEYS": f"ops:{OPS_KEY}"}
    with (
        serving(*urls(tmp_path), cwd=tmp_path, **keys) as served,
        httpx.Client(base_url=served.url, headers=OPS) as http,
    ):
        assert http.get("/health/live", headers={"Authorization": ""}).status_code == 200
        anonymous = httpx.post(f"{served.url}/commands/OpenAccount", json={})
        assert anonymous.status_code == 401
        assert http.get("/health/live").json()["status"] == "alive"
        ready = http.get("/health/ready")
        assert ready.status_code == 200
        names = {check["name"] for check in ready.json()["checks"]}
        assert {"store", "bus", "worker:relay", "worker:commands", "lag:relay"} <= names
        opened = {"account": "a", "initial_balance": 10}
        first = http.post("/commands/OpenAccount", json=opened, headers={"Idempotency-Key": "k"})
        again = http.post("/commands/OpenAccount", json=opened, headers={"Idempotency-Key": "k"})
        assert first.status_code == again.status_code == 200
        assert again.json()["deduplicated"] is True
        assert again.json()["event_ids"] == first.json()["event_ids"]
        assert len(http.get("/events").json()["events"]) == 1
        stream = http.get("/streams/a").json()
        assert stream["version"] == 1
        assert stream["events"][0]["metadata"]["actor"] == "ops"
        status = http.get("/status").json()
        assert status["service"] == "bank"
        assert {worker["name"] for worker in status["workers"]} == {"commands", "relay"}
        metrics = http.get("/metrics").text
        assert 'eventcore_commands_total{command="OpenAccount",outcome="written"} 1.0' in metrics
        openapi = http.get("/openapi.json").json()
        assert "/commands/Transfer" in openapi["paths"]
        assert "AccountOpened" in openapi["components"]["schemas"]
        asyncapi = http.get("/asyncapi.json").json()
        assert asyncapi["asyncapi"].startswith("3.")
        assert {"bank", "bank-commands"} <= {c["address"] for c in asyncapi["channels"].values()}
        code, out, err = served.stop()
    assert code == 0, err
    assert out.splitlines()[-1] == "serve: stopped"
    assert "sqlite" not in out + err


def test_contracts_export_prints_both_documents(tmp_path: Path) -> None:
    done = subprocess.run(
        [*EVENTCORE, "contracts", "export", BANK],
        capture_output=True,
        text=True,
        env=environment(),
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    documents = json.loads(done.stdout)
    assert documents["openapi"]["info"]["title"] == "bank"
    assert documents["asyncapi"]["info"]["title"] == "bank"


def test_a_name_that_is_not_a_service_is_a_one_line_usage_error(tmp_path: Path) -> None:
    done = subprocess.run(
        [*EVENTCORE, "serve", "eventcore.demo.bank:registry"],
        capture_output=True,
        text=True,
        env=environment(),
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: 'eventcore.demo.bank:registry' is a EventRegistry, not an eventcore Service"
    ]


CLIENTS = 64
#: Transfers answered 2xx before SIGTERM is sent: enough that it lands mid-stream.
BEFORE_SIGTERM = 300


async def test_sigterm_under_load_leaves_every_answered_command_whole_and_published(
    tmp_path: Path,
) -> None:
    args = urls(tmp_path)
    with serving(*args, "--dev", cwd=tmp_path) as served:
        limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
        async with httpx.AsyncClient(base_url=served.url, limits=limits, timeout=60) as http:
            for number in range(CLIENTS):
                for account in (f"from-{number}", f"to-{number}"):
                    body = {"account": account, "initial_balance": 10**9}
                    assert (await http.post("/commands/OpenAccount", json=body)).status_code == 200
            answered: list[str] = []
            refused: list[int] = []
            failed: list[str] = []
            enough = asyncio.Event()

            async def client(number: int) -> None:
                for sent in range(10**6):
                    transfer = f"t-{number}-{sent}"
                    body = {
                        "source": f"from-{number}",
                        "target": f"to-{number}",
                        "amount": 1,
                        "transfer_id": transfer,
                    }
                    try:
                        response = await http.post("/commands/Transfer", json=body)
                    except httpx.TransportError as error:
                        failed.append(type(error).__name__)
                        return
                    if response.status_code == 200:
                        answered.append(transfer)
                        if len(answered) >= BEFORE_SIGTERM:
                            enough.set()
                    else:
                        refused.append(response.status_code)
                        assert response.headers["content-type"] == "application/problem+json"
                        return

            clients = [asyncio.create_task(client(number)) for number in range(CLIENTS)]
            await enough.wait()
            served.process.send_signal(signal.SIGTERM)
            await asyncio.gather(*clients)
        code, _, err = await asyncio.to_thread(served.stop)
    assert code == 0, err
    assert set(refused) <= {503}, refused
    assert len(refused) + len(failed) == CLIENTS
    store = await open_store(args[1], create=False)
    try:
        written: dict[str, set[str]] = {}
        async for batch in store.read_all():
            for stored in batch:
                event = registry.decode(stored)
                if isinstance(event, Withdrawn | Deposited):
                    written.setdefault(event.transfer_id, set()).add(type(event).__name__)
        head = await store.last_position()
    finally:
        await store.aclose()
    assert set(answered) <= set(written)
    assert all(kinds == {"Withdrawn", "Deposited"} for kinds in written.values())
    bus = await open_bus(args[3], create=False)
    try:
        checkpoint = await bus.load_checkpoint("bank")
    finally:
        await bus.aclose()
    assert checkpoint is not None
    assert checkpoint.position == head


async def test_served_on_postgresql_and_nats_a_command_is_stored_and_published(
    tmp_path: Path,
) -> None:
    from tests.messaging.buses import NATS_URL, drop_nats_namespace, require_nats

    await require_nats()
    psycopg = pytest.importorskip("psycopg")
    try:
        psycopg.connect(POSTGRES_URL, connect_timeout=5).close()
    except psycopg.OperationalError as error:
        skip_or_fail(f"PostgreSQL unreachable: {error}")
    token = uuid.uuid4().hex[:10]
    store_url = f"{POSTGRES_URL}?schema=serve_{token}"
    bus_url = f"{NATS_URL}?namespace=s{token}"
    try:
        with serving("--store", store_url, "--bus", bus_url, "--dev", cwd=tmp_path) as served:
            async with httpx.AsyncClient(base_url=served.url) as http:
                body = {"account": "a", "initial_balance": 1}
                answer = await http.post("/commands/OpenAccount", json=body)
                assert answer.status_code == 200, answer.text
                ready = (await http.get("/health/ready")).json()
                assert ready["status"] == "ready", ready
            code, _, err = await asyncio.to_thread(served.stop)
        assert code == 0, err
        bus = await open_bus(bus_url, create=False)
        try:
            checkpoint = await bus.load_checkpoint("bank")
        finally:
            await bus.aclose()
        assert checkpoint is not None
        assert checkpoint.position == answer.json()["positions"][-1]
    finally:
        await drop_nats_namespace(f"s{token}")
        with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
            admin.execute(f'DROP SCHEMA IF EXISTS "serve_{token}" CASCADE')


def test_a_port_in_use_is_a_one_line_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [*EVENTCORE, "serve", BANK, "--port", str(port), "--dev", *urls(tmp_path)],
            capture_output=True,
            text=True,
            env=environment(),
            cwd=tmp_path,
            timeout=120,
            check=False,
        )
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines()[-1] == f"error: could not listen on 127.0.0.1:{port}"


def test_sigint_stops_it_as_sigterm_does(tmp_path: Path) -> None:
    with serving(*urls(tmp_path), "--dev", cwd=tmp_path) as served:
        code, out, err = served.stop(signal.SIGINT)
    assert code == 0, err
    assert out.splitlines()[-1] == "serve: stopped"


def test_outside_dev_mode_no_key_to_check_tokens_with_is_refused_before_it_starts(
    tmp_path: Path,
) -> None:
    done = subprocess.run(
        [*EVENTCORE, "serve", BANK, "--port", "0", *urls(tmp_path)],
        capture_output=True,
        text=True,
        env=environment(),
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("error: ")
    assert done.stdout == ""
    assert not (tmp_path / "bank.db").exists()


async def test_two_instances_are_listed_in_the_registry_until_each_stops(tmp_path: Path) -> None:
    from eventcore.registry import open_registry

    registry_url = f"sqlite:///{tmp_path / 'registry.db'}"
    args = (*urls(tmp_path), "--dev", "--registry", registry_url)
    with serving(*args, cwd=tmp_path) as one, serving(*args, cwd=tmp_path) as two:
        registry = await open_registry(registry_url)
        try:
            listed = await registry.discover("bank")
            assert sorted(each.address for each in listed) == sorted([one.url, two.url])
            code, _, err = await asyncio.to_thread(one.stop)
            assert code == 0, err
            [left] = await registry.discover("bank")
            assert left.address == two.url
        finally:
            await registry.aclose()


async def test_a_password_in_the_store_url_is_never_shown(tmp_path: Path) -> None:
    psycopg = pytest.importorskip("psycopg")
    try:
        psycopg.connect(POSTGRES_URL, connect_timeout=5).close()
    except psycopg.OperationalError as error:
        skip_or_fail(f"PostgreSQL unreachable: {error}")
    password = "pw-" + uuid.uuid4().hex
    schema = f"serve_{uuid.uuid4().hex[:10]}"
    # The test server trusts local connections, so any password opens it.
    user_and_host = POSTGRES_URL.split("://", 1)[1].replace("@", f":{password}@", 1)
    store_url = f"postgresql://{user_and_host}?schema={schema}"
    seen: list[str] = []
    try:
        args = ("--store", store_url, "--bus", f"sqlite:///{tmp_path / 'bus.db'}", "--dev")
        with serving(*args, cwd=tmp_path) as served:
            async with httpx.AsyncClient(base_url=served.url) as http:
                body = {"account": "a", "initial_balance": 1}
                for method, path in [
                    ("POST", "/commands/OpenAccount"),
                    ("POST", "/commands/Nope"),
                    ("GET", "/status"),
                    ("GET", "/health/ready"),
                    ("GET", "/metrics"),
                    ("GET", "/openapi.json"),
                    ("GET", "/streams/missing"),
                ]:
                    answer = await http.request(method, path, json=body)
                    seen.append(answer.text)
            code, out, err = await asyncio.to_thread(served.stop)
        seen += [out, err]
        assert code == 0, err
    finally:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
            admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    assert all(password not in text for text in seen)
