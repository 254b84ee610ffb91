"""The NATS bus with credentials in its URL, against a throwaway nats-server that
demands them: user and password, or a token. The bus publishes and consumes; wrong or
missing credentials are ``CredentialsRefused``; nothing shows a password or token."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from eventcore.errors import BusUnavailable, CredentialsRefused, InvalidUrl
from eventcore.messaging import open_bus
from eventcore.messaging.url import BusUrl
from tests.messaging.auth_nats import PASSWORD, TOKEN, free_port, serve_with_auth
from tests.messaging.helpers import consume, ids, outgoing

WRONG = "Not-the-password-5521"
SECRETS = (PASSWORD, TOKEN, WRONG)


@pytest.fixture(scope="module")
def user_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    yield from serve_with_auth(tmp_path_factory.mktemp("nats-users"), "users")


@pytest.fixture(scope="module")
def token_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    yield from serve_with_auth(tmp_path_factory.mktemp("nats-token"), "token")


@pytest.fixture(autouse=True)
def everything_logged(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Whatever a test logged, at any level, holds no secret."""
    caplog.set_level(logging.DEBUG)
    yield
    for secret in SECRETS:
        assert secret not in caplog.text


def assert_no_secret(*shown: object) -> None:
    for text in map(str, shown):
        for secret in SECRETS:
            assert secret not in text


@pytest.mark.parametrize("auth", ["user", "token"])
async def test_the_bus_publishes_and_consumes_with_credentials_in_its_url(
    request: pytest.FixtureRequest, auth: str
) -> None:
    if auth == "user":
        port = request.getfixturevalue("user_server")
        url = f"nats://alice:{PASSWORD}@127.0.0.1:{port}?namespace=creds"
    else:
        port = request.getfixturevalue("token_server")
        url = f"nats://{TOKEN}@127.0.0.1:{port}?namespace=creds"
    bus = await open_bus(url)
    try:
        await bus.publish(outgoing(3))
        consumer = await bus.consumer("orders", "billing")
        got = await consume(consumer, 3)
        assert_no_secret(bus.url, repr(bus), repr(consumer))
    finally:
        await bus.aclose()

    assert sorted(ids(got)) == ["m0", "m1", "m2"]


@pytest.mark.parametrize(
    "credentials",
    [f"alice:{WRONG}@", f"mallory:{PASSWORD}@", "", f"{WRONG}@"],
    ids=["wrong-password", "wrong-user", "none", "token-for-a-user-server"],
)
async def test_refused_credentials_are_a_typed_error_without_the_secret(
    user_server: int, credentials: str
) -> None:
    with pytest.raises(CredentialsRefused) as caught:
        await open_bus(f"nats://{credentials}127.0.0.1:{user_server}?namespace=creds")

    assert caught.value.server == "NATS"
    assert caught.value.where == f"127.0.0.1:{user_server}"
    assert_no_secret(caught.value, repr(caught.value), caught.value.__cause__)


async def test_a_wrong_token_is_refused_without_showing_it(token_server: int) -> None:
    with pytest.raises(CredentialsRefused) as caught:
        await open_bus(f"nats://{WRONG}@127.0.0.1:{token_server}")

    assert_no_secret(caught.value, repr(caught.value))


async def test_an_unreachable_server_is_unavailable_not_refused() -> None:
    with pytest.raises(BusUnavailable) as caught:
        await open_bus(f"nats://alice:{PASSWORD}@127.0.0.1:{free_port()}")

    assert_no_secret(caught.value, repr(caught.value))


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        ("creds=/no/such/app.creds", "not a readable file"),
        ("tls_ca=/no/such/ca.pem", "not a readable file"),
        ("tls_cert=/no/such/cert.pem", "go together"),
    ],
)
async def test_credential_files_are_checked_before_connecting(
    user_server: int, options: str, reason: str
) -> None:
    with pytest.raises(InvalidUrl, match=reason) as caught:
        await open_bus(f"tls://alice:{PASSWORD}@127.0.0.1:{user_server}?{options}")

    assert_no_secret(caught.value)


def test_only_nats_urls_take_credential_options() -> None:
    with pytest.raises(InvalidUrl, match="unknown option"):
        BusUrl.parse("sqlite:///tmp/bus.db?creds=/x")
