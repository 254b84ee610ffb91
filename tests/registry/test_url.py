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
