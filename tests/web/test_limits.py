"""Request limits at the HTTP edge (eventcore.web.limits): headers, body size while it
streams, slow bodies, JSON nesting and the deadline — over a real uvicorn server, and at
the ASGI level where counting what was read is the point."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.types import Message

from eventcore import EventStore, open_store
from eventcore.errors import InvalidSettings
from eventcore.web.auth import AuthSettings
from eventcore.web.credentials import ApiKeys
from eventcore.web.limits import Limits, LimitsMiddleware, json_nesting_exceeds
from eventcore.web.security import SecuritySettings, secure
from tests.web.app import Face
from tests.web.serving import served

KEY = "ops-key-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture
async def store() -> AsyncIterator[EventStore]:
    opened = await open_store("memory://")
    yield opened
    await opened.aclose()


def settings(**limits: Any) -> SecuritySettings:
    return SecuritySettings(
        auth=AuthSettings(api_keys=ApiKeys([("ops", KEY, frozenset())])), limits=Limits(**limits)
    )


def assert_problem(response: httpx.Response, status: int, slug: str) -> None:
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == f"https://eventcore.dev/problems/{slug}"


async def test_a_body_over_the_limit_is_413_and_never_reaches_the_endpoint(
    store: EventStore,
) -> None:
    face = Face(store)
    body = json.dumps({"account": "account-1", "amount": 1, "pad": "x" * 2000}).encode()
    async with (
        served(secure(face.app(), settings(max_body_bytes=1000))) as url,
        httpx.AsyncClient(base_url=url) as client,
    ):
        response = await client.post("/commands/Deposit", content=body, headers=AUTH)

    assert_problem(response, 413, "payload-too-large")
    assert face.bodies == []
    assert await store.last_position() == 0


async def test_a_streamed_body_is_refused_once_past_the_limit_without_the_rest(
    store: EventStore,
) -> None:
    face = Face(store)
    async with served(secure(face.app(), settings(max_body_bytes=1000))) as url:
        parts = urlsplit(url)
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        writer.write(
            b"POST /commands/Deposit HTTP/1.1\r\nHost: svc\r\n"
            + f"Authorization: Bearer {KEY}\r\n".encode()
            + b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        # 1,100 bytes of a body that would go on for ever: the rest is never sent.
        for _ in range(11):
            writer.write(b"64\r\n" + b" " * 100 + b"\r\n")
            await writer.drain()
        async with asyncio.timeout(30):
            answer = await reader.read()
        writer.close()

    assert answer.split(b"\r\n", 1)[0] == b"HTTP/1.1 413 Request Entity Too Large"
    assert b"https://eventcore.dev/problems/payload-too-large" in answer
    assert face.bodies == []


async def test_a_body_within_the_limit_goes_through(store: EventStore) -> None:
    face = Face(store)
    async with (
        served(secure(face.app(), settings(max_body_bytes=1000))) as url,
        httpx.AsyncClient(base_url=url) as client,
    ):
        response = await client.post(
            "/commands/Deposit", json={"account": "account-1", "amount": 3}, headers=AUTH
        )

    assert response.status_code == 200
    assert await store.last_position() == 1


async def test_a_streamed_body_is_refused_at_the_first_chunk_past_the_limit() -> None:
    chunks = [b"x" * 100] * 50
    read = 0

    async def receive() -> Message:
        nonlocal read
        read += 1
        return {"type": "http.request", "body": chunks[read - 1], "more_body": read < len(chunks)}

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("the endpoint must not run")

    scope = {"type": "http", "method": "POST", "path": "/commands/X", "headers": []}
    await LimitsMiddleware(app, Limits(max_body_bytes=1000))(scope, receive, send)

    assert read == 11
    assert sent[0]["status"] == 413


async def test_a_body_that_trickles_in_is_cut_off_with_408(store: EventStore) -> None:
    face = Face(store)
    async with served(secure(face.app(), settings(body_timeout=0.2))) as url:
        parts = urlsplit(url)
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        writer.write(
            b"POST /commands/Deposit HTTP/1.1\r\nHost: svc\r\n"
            + f"Authorization: Bearer {KEY}\r\n".encode()
            + b'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"acc'
        )
        await writer.drain()
        # The client sends nothing more; the server answers and hangs up on its own.
        async with asyncio.timeout(30):
            answer = await reader.read()
        writer.close()

    head = answer.split(b"\r\n", 1)[0]
    assert head == b"HTTP/1.1 408 Request Timeout"
    assert b"https://eventcore.dev/problems/request-timeout" in answer
    assert face.bodies == []


@pytest.mark.parametrize(("depth", "status"), [(32, 200), (33, 422)])
async def test_json_nested_past_the_limit_is_422(
    store: EventStore, depth: int, status: int
) -> None:
    face = Face(store)
    nested: Any = 5
    for _ in range(depth - 1):
        nested = [nested]
    body = {"account": "account-1", "amount": 5, "extra": nested}
    async with (
        served(secure(face.app(), settings(max_json_depth=32))) as url,
        httpx.AsyncClient(base_url=url) as client,
    ):
        response = await client.post("/commands/Deposit", json=body, headers=AUTH)

    assert response.status_code == status
    if status == 422:
        assert_problem(response, 422, "invalid-input")
        assert face.bodies == []


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet='[]{}"\\ab'),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(alphabet='[]{}"\\ab', max_size=3), inner, max_size=3)
    ),
    max_leaves=30,
)


def depth_of(value: object) -> int:
    if isinstance(value, list):
        return 1 + max((depth_of(item) for item in value), default=0)
    if isinstance(value, dict):
        return 1 + max((depth_of(item) for item in value.values()), default=0)
    return 0


@given(value=JSON, limit=st.integers(min_value=1, max_value=6))
def test_json_nesting_counts_brackets_outside_strings_only(value: object, limit: int) -> None:
    body = json.dumps(value).encode()

    assert json_nesting_exceeds(body, limit) == (depth_of(value) > limit)


async def test_too_many_headers_or_header_bytes_are_431(store: EventStore) -> None:
    app = secure(Face(store).app(), settings(max_headers=20, max_header_bytes=2000))
    async with served(app) as url, httpx.AsyncClient(base_url=url) as client:
        many = await client.get("/whoami", headers={**AUTH, **{f"x-h{i}": "v" for i in range(30)}})
        large = await client.get("/whoami", headers={**AUTH, "x-big": "v" * 3000})
        fine = await client.get("/whoami", headers=AUTH)

    assert_problem(many, 431, "headers-too-large")
    assert_problem(large, 431, "headers-too-large")
    assert fine.status_code == 200


async def test_an_endpoint_past_the_deadline_is_504(store: EventStore) -> None:
    face = Face(store, slow_seconds=60)
    async with (
        served(secure(face.app(), settings(deadline=0.2))) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as client,
    ):
        response = await client.get("/slow", headers=AUTH)

    assert_problem(response, 504, "deadline-exceeded")


async def test_a_response_under_way_is_not_cut_off_by_the_deadline(store: EventStore) -> None:
    face = Face(store)
    async with (
        served(secure(face.app(), settings(deadline=0.1))) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as client,
        client.stream("GET", "/stream", headers=AUTH) as response,
    ):
        lines = response.aiter_lines()
        first = await anext(lines)
        await asyncio.sleep(0.5)  # well past the deadline
        face.release.set()
        rest = [line async for line in lines]

    assert response.status_code == 200
    assert (first, rest) == ("first", ["last"])


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("EVENTCORE_MAX_BODY_BYTES", "1MB"),
        ("EVENTCORE_MAX_BODY_BYTES", "0"),
        ("EVENTCORE_MAX_JSON_DEPTH", "-1"),
        ("EVENTCORE_BODY_TIMEOUT", "soon"),
        ("EVENTCORE_BODY_TIMEOUT", "nan"),
        ("EVENTCORE_REQUEST_DEADLINE", "-5"),
    ],
)
def test_limits_from_the_environment_are_checked(variable: str, value: str) -> None:
    with pytest.raises(InvalidSettings):
        Limits.from_env({variable: value})


def test_limits_from_the_environment() -> None:
    limits = Limits.from_env(
        {
            "EVENTCORE_MAX_BODY_BYTES": "2048",
            "EVENTCORE_MAX_JSON_DEPTH": "8",
            "EVENTCORE_BODY_TIMEOUT": "2.5",
            "EVENTCORE_REQUEST_DEADLINE": "0",
        }
    )

    assert limits == Limits(max_body_bytes=2048, max_json_depth=8, body_timeout=2.5, deadline=None)
