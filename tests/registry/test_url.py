"""Registry URLs: each backend's form, and every malformed one refused with
``InvalidUrl`` that never shows a password."""

from __future__ import annotations

import pytest

from eventcore.errors import InvalidUrl
from eventcore.registry import RegistryUrl, open_registry


@pytest.mark.parametrize(
    ("url", "backend", "location", "namespace"),
    [
        ("memory://", "memory", "", "eventcore"),
        ("sqlite:///var/lib/registry.db", "sqlite", "/var/lib/registry.db", "eventcore"),
        ("sqlite://relative/registry.db", "sqlite", "relative/registry.db", "eventcore"),
        ("nats://127.0.0.1:4222", "nats", "127.0.0.1:4222", "eventcore"),
        ("nats://nats.internal", "nats", "nats.internal:4222", "eventcore"),
        ("nats://u:p@127.0.0.1:4223?namespace=shop", "nats", "127.0.0.1:4223", "shop"),
        ("tls://nats.internal", "nats", "nats.internal:4222", "eventcore"),
        ("TLS://token@10.0.0.1:4443?tls_hostname=nats", "nats", "10.0.0.1:4443", "eventcore"),
        ("nats://h?creds=/etc/app.creds&namespace=shop", "nats", "h:4222", "shop"),
    ],
)
def test_each_backend_parses(url: str, backend: str, location: str, namespace: str) -> None:
    parsed = RegistryUrl.parse(url)

    assert (parsed.backend, parsed.location, parsed.namespace) == (backend, location, namespace)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("registry.db", "expected scheme://"),
        ("redis://127.0.0.1", "unknown registry scheme"),
        ("memory://somewhere", "takes no path"),
        ("sqlite://", "no file path"),
        ("sqlite:///tmp/r.db?namespace=x", "only nats:// takes a namespace"),
        ("nats://127.0.0.1:4222?namespace=a.b", "only letters"),
        ("nats://127.0.0.1:4222?namespace=", "empty"),
        ("nats://127.0.0.1:4222?partitions=2", "unknown option"),
        ("sqlite:///tmp/r.db?creds=/x.creds", "unknown option"),
        ("memory://?tls_ca=/ca.pem", "unknown option"),
        ("tls://", "no host"),
        ("nats://127.0.0.1:port", "malformed host or port"),
        ("nats://:4222", "no host"),
        ("nats://127.0.0.1:4222?a=1&&", "malformed query"),
        ("sqlite:///tmp/new\nline.db", "control character"),
    ],
)
def test_a_malformed_url_is_invalid(url: str, reason: str) -> None:
    with pytest.raises(InvalidUrl) as raised:
        RegistryUrl.parse(url)

    assert reason in raised.value.reason


@pytest.mark.parametrize(
    "url",
    [
        "nats://admin:hunter2@127.0.0.1:4222?colour=red",
        "nats://admin:hunter2@127.0.0.1:port",
        "redis://admin:hunter2@127.0.0.1",
        "nats://admin:hunter2@127.0.0.1:4222?namespace=a.b",
    ],
)
def test_an_invalid_url_never_shows_its_password(url: str) -> None:
    with pytest.raises(InvalidUrl) as raised:
        RegistryUrl.parse(url)

    assert "hunter2" not in str(raised.value)
    assert "***@" in str(raised.value)


async def test_open_registry_refuses_a_file_path_it_cannot_share(tmp_path: object) -> None:
    with pytest.raises(InvalidUrl):
        await open_registry("sqlite://:memory:")


@pytest.mark.parametrize(
    ("url", "secret", "shown"),
    [
        ("nats://admin:hunter2@127.0.0.1:4222", "hunter2", "nats://admin:***@127.0.0.1:4222"),
        ("tls://s3cr3t-token@nats:4443?namespace=x", "s3cr3t-token", "tls://***@nats:4443"),
        ("nats://admin:hunt%40er2@h?namespace=x", "hunt%40er2", "nats://admin:***@h?"),
    ],
)
def test_repr_and_str_never_show_a_password_or_token(url: str, secret: str, shown: str) -> None:
    parsed = RegistryUrl.parse(url)

    assert secret in parsed.raw  # what connecting needs
    for text in (repr(parsed), str(parsed), repr([parsed]), f"{parsed}"):
        assert secret not in text
        assert shown in text
