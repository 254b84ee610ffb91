"""The HTTP face in process (httpx over ASGI): each error class answers its status and
its stable problem ``type``, and bad input writes nothing. ``test_serve.py`` drives the
same app as a real ``eventcore serve`` process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from eventcore.demo.bank import AccountOpened, OpenAccount, Transfer, registry
from eventcore.errors import ConcurrencyConflict
from eventcore.messaging.memory import MemoryBus
from eventcore.messaging.topics import TopicMap
from eventcore.retry import RetryPolicy
from eventcore.service import Service
from eventcore.store import EventStore
from eventcore.store.memory import MemoryStore
from eventcore.testing import FaultPlan, FaultyStore
from eventcore.web import PROBLEM_BASE, PROBLEM_MEDIA_TYPE, create_app, security_middleware
from eventcore.web.principal import Principal
from eventcore.web.security import SecuritySettings


def bank(store: EventStore | None = None, **options: Any) -> Service:
    return Service(
        "bank",
        events=registry,
        commands=[OpenAccount, Transfer],
        topics=TopicMap({AccountOpened: "bank"}),
        store=store or MemoryStore(),
        bus=MemoryBus(),
        **options,
    )


async def client_of(service: Service, **app_options: Any) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=create_app(service, **app_options))
    return httpx.AsyncClient(transport=transport, base_url="http://bank")


@pytest.fixture
async def served() -> AsyncIterator[tuple[Service, httpx.AsyncClient]]:
    async with bank() as service, await client_of(service) as client:
        yield service, client


def assert_problem(response: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_MEDIA_TYPE
    body: dict[str, Any] = response.json()
    assert body["type"] == PROBLEM_BASE + slug
    assert body["status"] == status
    return body


async def test_a_command_answers_what_it_wrote(served: tuple[Service, httpx.AsyncClient]) -> None:
    _, client = served
    response = await client.post(
        "/commands/OpenAccount", json={"account": "a", "initial_balance": 3}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["stream_versions"] == {"a": 1}
    assert body["deduplicated"] is False


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b'{"account": "a"}',
        b'{"account": 5, "initial_balance": 1}',
        b'{"account": "   ", "initial_balance": 1}',
        b'{"account": "a\\u0001", "initial_balance": 1}',
        b"[]",
    ],
)
async def test_invalid_input_is_422_and_writes_nothing(
    served: tuple[Service, httpx.AsyncClient], body: bytes
) -> None:
    service, client = served
    response = await client.post("/commands/OpenAccount", content=body)
    assert_problem(response, 422, "invalid-input")
    assert await service.store.last_position() == 0


async def test_an_empty_idempotency_key_is_422(served: tuple[Service, httpx.AsyncClient]) -> None:
    _, client = served
    response = await client.post(
        "/commands/OpenAccount",
        json={"account": "a", "initial_balance": 1},
        headers={"Idempotency-Key": "x" * 201},
    )
    assert_problem(response, 422, "invalid-input")


async def test_an_unknown_command_is_404(served: tuple[Service, httpx.AsyncClient]) -> None:
    _, client = served
    assert_problem(await client.post("/commands/Nope", json={}), 404, "unknown-command")


async def test_a_rejected_command_is_409(served: tuple[Service, httpx.AsyncClient]) -> None:
    _, client = served
    body = {"source": "a", "target": "b", "amount": 1, "transfer_id": "t"}
    problem = assert_problem(
        await client.post("/commands/Transfer", json=body), 409, "command-rejected"
    )
    assert "not open" in problem["detail"]


class Contended:
    """A store whose every append meets a conflict (another writer always wins)."""

    def __init__(self, store: EventStore) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def append(self, *args: Any, **kwargs: Any) -> Any:
        raise ConcurrencyConflict(stream_id="a", expected=0, actual=1)


async def test_conflicts_outlasting_the_retries_are_409() -> None:
    store = Contended(MemoryStore())
    retry = RetryPolicy(max_attempts=2, initial_delay=0.0, max_delay=0.0)
    service = bank(store, retry=retry)
    async with service, await client_of(service) as client:
        response = await client.post(
            "/commands/OpenAccount", json={"account": "a", "initial_balance": 1}
        )
    assert_problem(response, 409, "conflict")


async def test_a_store_outage_is_503_and_names_no_url() -> None:
    store = FaultyStore(MemoryStore(), FaultPlan(seed=1, fail=1.0, calls={"append"}))
    async with bank(store) as service, await client_of(service) as client:
        response = await client.post(
            "/commands/OpenAccount", json={"account": "a", "initial_balance": 1}
        )
    problem = assert_problem(response, 503, "unavailable")
    assert response.headers["retry-after"] == "1"
    assert "://" not in problem["detail"]


async def test_a_command_past_its_deadline_is_504() -> None:
    plan = FaultPlan(seed=1, delay=1.0, max_delay=0.2, calls={"read_stream", "append"})
    async with (
        bank(FaultyStore(MemoryStore(), plan), command_timeout=0.001) as service,
        await client_of(service) as client,
    ):
        response = await client.post(
            "/commands/OpenAccount", json={"account": "a", "initial_balance": 1}
        )
    assert_problem(response, 504, "command-timeout")


async def test_a_draining_service_answers_503_but_still_answers_probes(
    served: tuple[Service, httpx.AsyncClient],
) -> None:
    service, client = served
    await service.drain()
    body = {"account": "a", "initial_balance": 1}
    assert_problem(await client.post("/commands/OpenAccount", json=body), 503, "draining")
    assert_problem(await client.get("/events"), 503, "draining")
    assert (await client.get("/health/live")).status_code == 200
    ready = await client.get("/health/ready")
    assert ready.status_code == 503
    assert ready.json()["status"] == "draining"


async def test_reads_page_the_log_and_404_a_missing_stream(
    served: tuple[Service, httpx.AsyncClient],
) -> None:
    _, client = served
    for account in "abc":
        body = {"account": account, "initial_balance": 1}
        assert (await client.post("/commands/OpenAccount", json=body)).status_code == 200
    first = (await client.get("/events", params={"limit": 2})).json()
    assert [e["stream_id"] for e in first["events"]] == ["a", "b"]
    rest = (await client.get("/events", params={"after": first["next_after"]})).json()
    assert [e["stream_id"] for e in rest["events"]] == ["c"]
    assert rest["next_after"] is None
    none = (await client.get("/events", params={"types": "Deposited"})).json()
    assert none["events"] == []
    stream = (await client.get("/streams/b")).json()
    assert stream["version"] == 1
    assert stream["events"][0]["data"] == {"initial_balance": 1}
    assert_problem(await client.get("/streams/zzz"), 404, "not-found")
    empty = (await client.get("/streams/b", params={"from": 2})).json()
    assert (empty["version"], empty["events"], empty["next_from"]) == (1, [], None)
    assert_problem(await client.get("/events", params={"limit": 0}), 422, "invalid-input")
    assert_problem(await client.get("/events", params={"after": "x"}), 422, "invalid-input")


KEYS = {"EVENTCORE_API_KEYS": "teller:teller-key-0123456789:teller,guest:guest-key-0123456789"}


def tellers_only(principal: Principal, command: str) -> bool:
    return "teller" in principal.roles


async def test_behind_the_edge_the_caller_is_the_actor_and_the_hook_decides() -> None:
    security = SecuritySettings.from_env(KEYS, authorize=tellers_only)
    async with (
        bank() as service,
        await client_of(service, middleware=security_middleware(security)) as client,
    ):
        body = {"account": "a", "initial_balance": 1}
        refused = await client.post("/commands/OpenAccount", json=body)
        assert_problem(refused, 401, "unauthenticated")
        guest = {"Authorization": "Bearer guest-key-0123456789"}
        forbidden = await client.post("/commands/OpenAccount", json=body, headers=guest)
        assert_problem(forbidden, 403, "forbidden")
        assert await service.store.last_position() == 0
        teller = {"Authorization": "Bearer teller-key-0123456789"}
        accepted = await client.post("/commands/OpenAccount", json=body, headers=teller)
        assert accepted.status_code == 200, accepted.text
        stream = (await client.get("/streams/a", headers=teller)).json()
        assert (await client.get("/health/live")).status_code == 200
    assert stream["events"][0]["metadata"]["actor"] == "teller"


async def test_a_long_stream_is_read_in_pages(served: tuple[Service, httpx.AsyncClient]) -> None:
    _, client = served
    await client.post("/commands/OpenAccount", json={"account": "a", "initial_balance": 9})
    await client.post("/commands/OpenAccount", json={"account": "b", "initial_balance": 0})
    for number in range(4):
        body = {"source": "a", "target": "b", "amount": 1, "transfer_id": f"t{number}"}
        assert (await client.post("/commands/Transfer", json=body)).status_code == 200
    seen: list[int] = []
    start: int | None = 1
    while start is not None:
        page = (await client.get("/streams/a", params={"from": start, "limit": 2})).json()
        assert page["version"] == 5
        seen += [event["version"] for event in page["events"]]
        start = page["next_from"]
    assert seen == [1, 2, 3, 4, 5]
