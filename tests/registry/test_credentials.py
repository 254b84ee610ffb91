"""The NATS registry with credentials in its URL, against a throwaway nats-server that
demands them (``nats_user_server`` / ``nats_token_server``): instances register and are
discovered end to end; wrong or missing credentials are ``CredentialsRefused``; nothing
shows a password or token — errors, their causes, reprs, statuses, logs."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from eventcore.errors import CredentialsRefused, InvalidUrl, RegistryUnavailable
from eventcore.registry import Instance, Registrar, open_registry
from tests.messaging.auth_nats import PASSWORD, TOKEN, free_port

WRONG = "Not-the-registry-password-3391"
SECRETS = (PASSWORD, TOKEN, WRONG)
TTL = 5.0


@pytest.fixture(autouse=True)
def everything_logged(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Whatever a test logged, at any level, holds no secret."""
    caplog.set_level(logging.DEBUG)
    yield
    assert_no_secret(caplog.text)


def assert_no_secret(*shown: object) -> None:
    for text in map(str, shown):
        for secret in SECRETS:
            assert secret not in text


def causes(error: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    cause: BaseException | None = error
    while cause is not None and cause not in chain:
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__
    return chain


@pytest.mark.parametrize("auth", ["user", "token"])
async def test_instances_register_and_are_discovered_with_credentials_in_the_url(
    request: pytest.FixtureRequest, auth: str
) -> None:
    if auth == "user":
        port = request.getfixturevalue("nats_user_server")
        url = f"nats://alice:{PASSWORD}@127.0.0.1:{port}?namespace=reg_{auth}"
    else:
        port = request.getfixturevalue("nats_token_server")
        url = f"nats://{TOKEN}@127.0.0.1:{port}?namespace=reg_{auth}"
    instance = Instance.of("payments", "http://127.0.0.1:8001", instance_id="pay-1")
    registry = await open_registry(url)
    looker = await open_registry(url, create=False)
    try:
        registration = registry.register(instance, ttl=TTL)
        async with registration:
            listed = await looker.discover("payments")
            services = await looker.services()
            assert_no_secret(repr(registry), repr(registration), registration.status())
        after = await looker.discover("payments")
    finally:
        await looker.aclose()
        await registry.aclose()

    assert listed == [instance]
    assert services == ["payments"]
    assert after == []


async def test_the_registrar_registers_by_call_with_credentials(nats_user_server: int) -> None:
    url = f"nats://alice:{PASSWORD}@127.0.0.1:{nats_user_server}?namespace=reg_registrar"
    registrar = Registrar(await open_registry(url), ttl=TTL)
    looker = await open_registry(url, create=False)
    try:
        await registrar.register("orders", "ord-1", "http://127.0.0.1:9001")
        listed = [each.instance_id for each in await looker.discover("orders")]
        assert_no_secret(registrar.statuses())
        await registrar.deregister("orders", "ord-1")
        after = await looker.discover("orders")
    finally:
        await looker.aclose()
        await registrar.aclose()

    assert listed == ["ord-1"]
    assert after == []


@pytest.mark.parametrize(
    "credentials",
    [f"alice:{WRONG}@", f"mallory:{PASSWORD}@", "", f"{WRONG}@"],
    ids=["wrong-password", "wrong-user", "none", "token-for-a-user-server"],
)
@pytest.mark.parametrize("create", [True, False], ids=["open", "look"])
async def test_refused_credentials_are_a_typed_error_without_the_secret(
    nats_user_server: int, credentials: str, create: bool
) -> None:
    url = f"nats://{credentials}127.0.0.1:{nats_user_server}?namespace=reg_refused"

    with pytest.raises(CredentialsRefused) as caught:
        await open_registry(url, create=create)

    assert caught.value.server == "NATS"
    assert caught.value.where == f"127.0.0.1:{nats_user_server}"
    assert "Authorization Violation" in str(caught.value)
    for error in causes(caught.value):
        assert_no_secret(error, repr(error), error.args)


async def test_a_wrong_token_is_refused_without_showing_it(nats_token_server: int) -> None:
    with pytest.raises(CredentialsRefused) as caught:
        await open_registry(f"nats://{WRONG}@127.0.0.1:{nats_token_server}")

    assert_no_secret(caught.value, repr(caught.value))


async def test_an_unreachable_server_is_unavailable_not_refused() -> None:
    url = f"nats://alice:{PASSWORD}@127.0.0.1:{free_port()}"

    with pytest.raises(RegistryUnavailable) as caught:
        await open_registry(url)

    for error in causes(caught.value):
        assert_no_secret(error, repr(error))


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        ("creds=/no/such/app.creds", "not a readable file"),
        ("tls_ca=/no/such/ca.pem", "not a readable file"),
        ("tls_key=/no/such/key.pem", "go together"),
    ],
)
async def test_credential_files_are_checked_before_connecting(options: str, reason: str) -> None:
    # Nothing listens on the port: the URL is refused before any connection is tried.
    url = f"tls://alice:{PASSWORD}@127.0.0.1:{free_port()}?{options}"

    with pytest.raises(InvalidUrl, match=reason) as caught:
        await open_registry(url)

    assert_no_secret(caught.value, repr(caught.value))
