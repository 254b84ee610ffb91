"""Authentication and authorisation at the HTTP edge (eventcore.web.auth), against a
tiny Starlette app with a real store behind its command endpoint."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import jwt
import pytest
from starlette.types import Message, Receive, Scope, Send

from eventcore import EventStore, StreamId, open_store
from eventcore.errors import InvalidSettings
from eventcore.web.auth import AuthSettings, allow_roles
from eventcore.web.credentials import ApiKeys, JwtVerifier, Unauthenticated
from eventcore.web.principal import Principal, principal_of
from eventcore.web.security import SecuritySettings, secure
from tests.web.app import Face
from tests.web.tokens import AUDIENCE, ISSUER, new_key, token, write_jwks, write_public_pem

OPS_KEY = "ops-key-0123456789abcdef"
CI_KEY = "ci-key-0123456789abcdef"
TRUSTED = new_key()
STRANGER = new_key()


@pytest.fixture
async def store() -> AsyncIterator[EventStore]:
    opened = await open_store("memory://")
    yield opened
    await opened.aclose()


def settings_of(tmp_path: Path, **env: str) -> SecuritySettings:
    public = write_public_pem(TRUSTED, tmp_path / "trusted.pem")
    environ = {
        "EVENTCORE_API_KEYS": f"ops:{OPS_KEY}:admin,ci:{CI_KEY}",
        "EVENTCORE_JWT_PUBLIC_KEY": str(public),
        "EVENTCORE_JWT_ISSUER": ISSUER,
        "EVENTCORE_JWT_AUDIENCE": AUDIENCE,
        **env,
    }
    return SecuritySettings.from_env(environ)


def client_of(face: Face, settings: SecuritySettings) -> httpx.AsyncClient:
    app = secure(face.app(), settings)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://svc")


async def deposit(client: httpx.AsyncClient, headers: dict[str, str]) -> httpx.Response:
    return await client.post(
        "/commands/Deposit", json={"account": "account-1", "amount": 5}, headers=headers
    )


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


async def assert_nothing_written(face: Face) -> None:
    assert face.bodies == []
    assert await face.store.last_position() == 0


def assert_problem(response: httpx.Response, status: int, slug: str) -> None:
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["type"] == f"https://eventcore.dev/problems/{slug}"
    assert body["status"] == status


@pytest.mark.parametrize(
    ("headers", "error"),
    [
        ({}, None),
        (bearer("not-a-key-of-anyone-at-all"), "invalid_token"),
        ({"Authorization": f"Basic {OPS_KEY}"}, "invalid_request"),
        ({"Authorization": "Bearer"}, "invalid_request"),
        (bearer(token(TRUSTED, expires_in=-3600)), "invalid_token"),
        (bearer(token(STRANGER)), "invalid_token"),
        (bearer(token(TRUSTED, aud="someone-else")), "invalid_token"),
        (bearer(token(TRUSTED, iss="https://elsewhere.test")), "invalid_token"),
        (bearer(token(TRUSTED, subject=None)), "invalid_token"),
        (bearer(jwt.encode({"sub": "mallory", "exp": 2**40}, key=None, algorithm="none")), None),
        (bearer(jwt.encode({"sub": "mallory", "exp": 2**40}, "x" * 32, algorithm="HS256")), None),
    ],
    ids=[
        "no-token",
        "unknown-key",
        "basic-scheme",
        "empty-bearer",
        "expired-jwt",
        "jwt-signed-by-another-key",
        "jwt-for-another-audience",
        "jwt-from-another-issuer",
        "jwt-without-subject",
        "unsigned-jwt",
        "hmac-jwt",
    ],
)
async def test_a_request_that_proves_no_identity_is_401_and_writes_nothing(
    store: EventStore, tmp_path: Path, headers: dict[str, str], error: str | None
) -> None:
    face = Face(store)
    async with client_of(face, settings_of(tmp_path)) as client:
        response = await deposit(client, headers)

    assert_problem(response, 401, "unauthenticated")
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith('Bearer realm="eventcore"')
    if error is not None:
        assert f'error="{error}"' in challenge
    await assert_nothing_written(face)


async def test_an_expired_jwt_is_told_apart_from_a_wrong_signature(
    store: EventStore, tmp_path: Path
) -> None:
    async with client_of(Face(store), settings_of(tmp_path)) as client:
        expired = await deposit(client, bearer(token(TRUSTED, expires_in=-3600)))
        forged = await deposit(client, bearer(token(STRANGER)))

    assert "expired" in expired.json()["detail"]
    assert "signature" in forged.json()["detail"]


async def test_an_api_key_is_the_events_actor(store: EventStore, tmp_path: Path) -> None:
    async with client_of(Face(store), settings_of(tmp_path)) as client:
        response = await deposit(client, bearer(OPS_KEY))

    assert response.status_code == 200
    [stored] = await store.read_stream(StreamId("account-1"))
    assert stored.metadata.actor == "ops"


async def test_a_jwt_subject_is_the_events_actor(store: EventStore, tmp_path: Path) -> None:
    async with client_of(Face(store), settings_of(tmp_path)) as client:
        response = await deposit(client, bearer(token(TRUSTED, "alice")))

    assert response.status_code == 200
    [stored] = await store.read_stream(StreamId("account-1"))
    assert stored.metadata.actor == "alice"


async def test_a_jwks_file_picks_the_key_by_kid(store: EventStore, tmp_path: Path) -> None:
    jwks = write_jwks({"k1": STRANGER, "k2": TRUSTED}, tmp_path / "jwks.json")
    settings = settings_of(tmp_path, EVENTCORE_JWT_PUBLIC_KEY="", EVENTCORE_JWT_JWKS=str(jwks))
    async with client_of(Face(store), settings) as client:
        good = await deposit(client, bearer(token(TRUSTED, "bob", kid="k2")))
        wrong_kid = await deposit(client, bearer(token(TRUSTED, "bob", kid="k1")))
        unknown_kid = await deposit(client, bearer(token(TRUSTED, "bob", kid="k9")))

    assert good.status_code == 200
    assert_problem(wrong_kid, 401, "unauthenticated")
    assert_problem(unknown_kid, 401, "unauthenticated")
    assert [e.metadata.actor for e in await store.read_stream(StreamId("account-1"))] == ["bob"]


@pytest.mark.parametrize("asynchronous", [False, True], ids=["plain-hook", "async-hook"])
async def test_a_principal_the_hook_refuses_is_403_and_writes_nothing(
    store: EventStore, tmp_path: Path, asynchronous: bool
) -> None:
    asked: list[tuple[str, str]] = []

    def decide(principal: Principal, command: str) -> bool:
        asked.append((principal.id, command))
        return "admin" in principal.roles

    async def decide_later(principal: Principal, command: str) -> bool:
        await asyncio.sleep(0)
        return decide(principal, command)

    settings = settings_of(tmp_path)
    settings = SecuritySettings(
        auth=AuthSettings(
            api_keys=settings.auth.api_keys,
            authorize=decide_later if asynchronous else decide,
        )
    )
    face = Face(store)
    async with client_of(face, settings) as client:
        refused = await deposit(client, bearer(CI_KEY))
        await assert_nothing_written(face)
        allowed = await deposit(client, bearer(OPS_KEY))

    assert_problem(refused, 403, "forbidden")
    assert allowed.status_code == 200
    assert asked == [("ci", "Deposit"), ("ops", "Deposit")]


async def test_a_hook_that_answers_anything_but_true_refuses(
    store: EventStore, tmp_path: Path
) -> None:
    keys = settings_of(tmp_path).auth.api_keys
    settings = SecuritySettings(auth=AuthSettings(api_keys=keys, authorize=lambda p, c: None))  # type: ignore[arg-type,return-value]
    face = Face(store)
    async with client_of(face, settings) as client:
        response = await deposit(client, bearer(OPS_KEY))

    assert_problem(response, 403, "forbidden")
    await assert_nothing_written(face)


def test_allow_roles_lets_listed_roles_send_listed_commands() -> None:
    hook = allow_roles({"Deposit": ["teller"], "Ping": ["*"]})
    teller = Principal(id="t", scheme="jwt", roles=frozenset({"teller"}))
    guest = Principal(id="g", scheme="api-key")

    assert hook(teller, "Deposit") is True
    assert hook(guest, "Deposit") is False
    assert hook(guest, "Ping") is True
    assert hook(teller, "Withdraw") is False
    assert allow_roles({}, default=True)(guest, "Withdraw") is True


async def test_open_paths_answer_without_a_token_and_others_do_not(
    store: EventStore, tmp_path: Path
) -> None:
    async with client_of(Face(store), settings_of(tmp_path)) as client:
        live = await client.get("/health/live")
        metrics = await client.get("/metrics")
        closed = await client.get("/whoami")
        known = await client.get("/whoami", headers=bearer(OPS_KEY))

    assert (live.status_code, metrics.status_code) == (200, 200)
    assert_problem(closed, 401, "unauthenticated")
    assert known.json() == {"id": "ops", "scheme": "api-key"}


async def test_which_paths_are_open_is_configuration(store: EventStore, tmp_path: Path) -> None:
    settings = settings_of(tmp_path, EVENTCORE_OPEN_PATHS="/whoami")
    async with client_of(Face(store), settings) as client:
        now_open = await client.get("/whoami")
        now_closed = await client.get("/metrics")

    assert now_open.json() == {"id": "anonymous", "scheme": "none"}
    assert_problem(now_closed, 401, "unauthenticated")


async def test_development_mode_asks_nobody_and_sets_no_actor(store: EventStore) -> None:
    settings = SecuritySettings.from_env({}, dev=True)
    async with client_of(Face(store), settings) as client:
        response = await deposit(client, {})

    assert response.status_code == 200
    [stored] = await store.read_stream(StreamId("account-1"))
    assert stored.metadata.actor is None


def test_authentication_is_never_off_by_accident() -> None:
    with pytest.raises(InvalidSettings, match="no API key and no JWT key"):
        SecuritySettings.from_env({})


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("ops:short-key", "shorter than 16"),
        ("ops", "not name:token"),
        (":" + OPS_KEY, "not name:token"),
        (f"ops:{OPS_KEY},ci:{OPS_KEY}", "same key"),
    ],
)
def test_bad_api_keys_are_refused_without_showing_the_key(value: str, reason: str) -> None:
    with pytest.raises(InvalidSettings, match=reason) as caught:
        SecuritySettings.from_env({"EVENTCORE_API_KEYS": value})

    assert OPS_KEY not in str(caught.value)
    assert "short-key" not in str(caught.value)


def test_an_api_keys_file_takes_comments_and_roles(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text(f"# the operators\nops:{OPS_KEY}:admin teller\n\nci:{CI_KEY}  # robots\n")

    keys = ApiKeys.from_file(path, source="EVENTCORE_API_KEYS_FILE")

    assert keys.principal(OPS_KEY) == Principal(
        id="ops", scheme="api-key", roles=frozenset({"admin", "teller"})
    )
    assert keys.principal(CI_KEY) == Principal(id="ci", scheme="api-key")
    assert keys.principal("nobody-has-this-key") is None
    assert OPS_KEY not in repr(keys)


def test_a_verifier_refuses_algorithms_a_public_key_cannot_check(tmp_path: Path) -> None:
    public = write_public_pem(TRUSTED, tmp_path / "k.pem")

    with pytest.raises(InvalidSettings, match="HS256"):
        JwtVerifier.from_public_key(public, algorithms=["RS256", "HS256"])


async def test_no_token_shows_in_logs_or_responses(
    store: EventStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    refused_jwt = token(STRANGER, "mallory")
    async with client_of(Face(store), settings_of(tmp_path)) as client:
        answers = [
            await deposit(client, bearer("a-wrong-secret-key-value")),
            await deposit(client, bearer(refused_jwt)),
            await deposit(client, bearer(CI_KEY)),
        ]

    shown = caplog.text + "".join(a.text + str(a.headers) for a in answers)
    for secret in ("a-wrong-secret-key-value", refused_jwt, CI_KEY, OPS_KEY):
        assert secret not in shown


async def test_a_websocket_without_a_token_is_closed_before_it_opens(tmp_path: Path) -> None:
    reached: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        reached.append(principal_of(scope).id)

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def receive() -> Message:
        return {"type": "websocket.connect"}

    guarded = secure(app, settings_of(tmp_path))
    scope = {"type": "websocket", "path": "/live", "headers": []}
    await guarded(scope, receive, send)
    known = [(b"authorization", f"Bearer {OPS_KEY}".encode())]
    await guarded({**scope, "headers": known}, receive, send)

    assert sent == [{"type": "websocket.close", "code": 1008, "reason": "unauthenticated"}]
    assert reached == ["ops"]


def test_a_remembered_jwt_is_refused_once_it_expires(tmp_path: Path) -> None:
    now = [time.time()]
    public = write_public_pem(TRUSTED, tmp_path / "trusted.pem")
    verifier = JwtVerifier.from_public_key(public, leeway=0, clock=lambda: now[0])
    issued = token(TRUSTED, "alice", expires_in=300)

    first = verifier.principal(issued)
    again = verifier.principal(issued)
    now[0] += 301
    with pytest.raises(Unauthenticated, match="expired"):
        verifier.principal(issued)

    assert first == again == Principal(id="alice", scheme="jwt")
