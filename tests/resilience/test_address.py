"""Service names, service URLs and instances' addresses: checked where they are given, with
errors that say what is wrong and never show a password."""

from __future__ import annotations

import pytest

from eventcore.errors import InvalidName, InvalidUrl
from eventcore.resilience import StaticResolver, Target, check_base_url, check_service


@pytest.mark.parametrize(
    ("url", "service", "path"),
    [
        ("http://payments/orders/7", "payments", "/orders/7"),
        ("http://payments/orders?id=7&x=1", "payments", "/orders?id=7&x=1"),
        ("https://Payments_v2", "Payments_v2", "/"),
        ("http://payments/a/b#fragment", "payments", "/a/b"),
    ],
)
def test_a_service_url_names_the_service_and_the_path(url: str, service: str, path: str) -> None:
    assert Target.of(url) == Target(service, path)


@pytest.mark.parametrize(
    ("url", "path"),
    [("/orders/7", "/orders/7"), ("orders/7?x=1", "/orders/7?x=1"), ("", "/")],
)
def test_with_service_given_the_url_is_a_path(url: str, path: str) -> None:
    assert Target.of(url, service="payments") == Target("payments", path)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("payments/orders", "expected http://<service>/<path>"),
        ("ftp://payments/x", "expected http://<service>/<path>"),
        ("http://payments:8000/x", "no port"),
        ("http://payments.internal/x", "not a service name"),
        ("http:///x", "expected http://<service>/<path>"),
    ],
)
def test_a_url_that_names_no_service_is_refused(url: str, reason: str) -> None:
    with pytest.raises(InvalidUrl, match=reason):
        Target.of(url)


def test_a_service_url_with_credentials_is_refused_without_showing_them() -> None:
    with pytest.raises(InvalidUrl, match="no credentials") as refused:
        Target.of("http://alice:s3cret@payments/x")

    assert "s3cret" not in str(refused.value)


def test_a_full_url_beside_service_is_refused() -> None:
    with pytest.raises(InvalidUrl, match="a path on that service"):
        Target.of("http://payments/x", service="payments")


@pytest.mark.parametrize(
    "name", ["", "-payments", "pay ments", "payments.eu", "x" * 65, "pay/ments", None]
)
def test_a_bad_service_name_is_refused(name: object) -> None:
    with pytest.raises(InvalidName):
        check_service(name)


def test_a_base_url_may_carry_a_port_and_a_path_prefix() -> None:
    assert check_base_url("http://10.0.0.5:8000/") == "http://10.0.0.5:8000"
    assert check_base_url("https://payments.internal/api/") == "https://payments.internal/api"


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("10.0.0.5:8000", "expected http://host:port"),
        ("http://", "expected http://host:port"),
        ("http://10.0.0.5:8000/?x=1", "no query"),
        ("http://10.0.0.5:99999", "port is not valid"),
        (8000, "expected a string"),
    ],
)
def test_a_bad_base_url_is_refused(url: object, reason: str) -> None:
    with pytest.raises(InvalidUrl, match=reason):
        check_base_url(url)


def test_a_base_url_with_credentials_is_refused_without_showing_them() -> None:
    with pytest.raises(InvalidUrl, match="no credentials") as refused:
        check_base_url("http://alice:s3cret@10.0.0.5:8000")

    assert "s3cret" not in str(refused.value)


async def test_a_static_resolver_answers_from_its_table() -> None:
    resolver = StaticResolver(
        {"payments": ["http://10.0.0.5:8000/", "http://10.0.0.6:8000"], "audit": "http://a:1"}
    )

    assert list(await resolver("payments")) == ["http://10.0.0.5:8000", "http://10.0.0.6:8000"]
    assert list(await resolver("audit")) == ["http://a:1"]
    assert list(await resolver("shipping")) == []


def test_a_static_resolver_checks_its_table_when_made() -> None:
    with pytest.raises(InvalidUrl):
        StaticResolver({"payments": ["10.0.0.5:8000"]})
    with pytest.raises(InvalidName):
        StaticResolver({"pay ments": ["http://10.0.0.5:8000"]})
