"""Credentials never show: ``eventcore.redaction.redact`` and every place that shows a URL
(URL types' repr and str, every eventcore error's message)."""

from __future__ import annotations

import io
import logging
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eventcore._nats.connect import connection_settings
from eventcore.errors import (
    BusUnavailable,
    CredentialsRefused,
    DatabaseNotFound,
    InvalidSettings,
    InvalidUrl,
    StoreUnavailable,
)
from eventcore.messaging.url import BusUrl
from eventcore.redaction import RedactingFilter, redact
from eventcore.resilience.address import Target, check_base_url
from eventcore.store.postgres.store import PostgresConfig
from eventcore.store.url import StoreUrl

SECRET = "Hunter2-s3cret"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("postgresql://app:pw@db:5432/x", "postgresql://app:***@db:5432/x"),
        ("postgresql://app@db/x", "postgresql://app@db/x"),
        ("nats://alice:pw@h:4222", "nats://alice:***@h:4222"),
        ("nats://tok@h:4222", "nats://***@h:4222"),
        ("tls://tok@h:4222", "tls://***@h:4222"),
        ("https://tok@example.com/a", "https://***@example.com/a"),
        ("nats://u:p@ss@h", "nats://u:***@h"),
        (
            "postgresql://db/x?sslmode=require&sslpassword=kp",
            "postgresql://db/x?sslmode=require&sslpassword=***",
        ),
        ("x?token=abc&y=1", "x?token=***&y=1"),
        ("host=db password=pw user=x", "host=db password=*** user=x"),
        ("host=db password='a b' user=x", "host=db password=*** user=x"),
        ("sqlite:///tmp/a@b.db", "sqlite:///tmp/a@b.db"),
        ("memory://", "memory://"),
        ("no url here", "no url here"),
        (
            "see 'nats://u:pw@h' and 'postgresql://a:b@c/d'",
            "see 'nats://u:***@h' and 'postgresql://a:***@c/d'",
        ),
    ],
)
def test_redact_masks_passwords_tokens_and_secret_options(text: str, shown: str) -> None:
    assert redact(text) == shown


PASSWORDS = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=30
).map(lambda raw: SECRET + raw)


@given(password=PASSWORDS, scheme=st.sampled_from(["postgresql", "nats", "tls", "https"]))
def test_no_encoded_password_survives_redaction(password: str, scheme: str) -> None:
    encoded = quote(password, safe="")
    url = f"{scheme}://user:{encoded}@host:1234/db?sslpassword={encoded}&password={encoded}"

    assert SECRET not in redact(url)


@given(token=PASSWORDS, scheme=st.sampled_from(["nats", "tls", "https"]))
def test_no_token_survives_redaction(token: str, scheme: str) -> None:
    assert SECRET not in redact(f"{scheme}://{quote(token, safe='')}@host:4222")


def test_url_types_show_no_password() -> None:
    store = StoreUrl.parse(f"postgresql://app:{SECRET}@db:5432/x?sslmode=verify-full")
    bus = BusUrl.parse(f"nats://alice:{SECRET}@h:4222?namespace=ns")
    token_bus = BusUrl.parse(f"tls://{SECRET}@h:4222")
    config = PostgresConfig.from_url(store)

    for shown in (repr(store), str(store), repr(bus), str(bus), repr(token_bus), repr(config)):
        assert SECRET not in shown
    assert str(store) == "postgresql://app:***@db:5432/x?sslmode=verify-full"
    assert bus.raw.count(SECRET) == 1  # still there to connect with


@pytest.mark.parametrize(
    "make",
    [
        lambda: StoreUrl.parse(f"postgresql://app:{SECRET}@db/x?bogus=1").reject_unknown_options(
            set()
        ),
        lambda: PostgresConfig.from_url(
            StoreUrl.parse(f"postgresql://app:{SECRET}@db/x?pool_timeout=x")
        ),
        lambda: BusUrl.parse(f"nats://alice:{SECRET}@h:4222?partitions=0"),
        lambda: BusUrl.parse(f"nats://{SECRET}@h:4222?unknown=1"),
        lambda: connection_settings(
            f"tls://alice:{SECRET}@h:4222?creds=/no/such/file.creds",
            {"creds": "/no/such/file.creds"},
        ),
        lambda: BusUrl.parse(f"nats://alice:{SECRET}@h:notaport"),
        lambda: StoreUrl.parse(f"postgresql://app:{SECRET}@db:notaport/x"),
        lambda: Target.of(f"http://alice:{SECRET}@payments/x"),
        lambda: check_base_url(f"http://alice:{SECRET}@10.0.0.1:80"),
    ],
)
def test_errors_about_a_url_show_no_password(make: object) -> None:
    with pytest.raises(InvalidUrl) as caught:
        make()  # type: ignore[operator]

    assert SECRET not in str(caught.value)
    assert SECRET not in repr(caught.value)
    assert SECRET not in caught.value.url
    assert "***" in caught.value.url


def test_every_eventcore_error_masks_what_its_message_quotes() -> None:
    url = f"nats://alice:{SECRET}@h:4222"
    errors = [
        BusUnavailable(f"cannot reach {url}"),
        StoreUnavailable(f"libpq said: password={SECRET} host=db"),
        DatabaseNotFound(url, "missing"),
        CredentialsRefused("NATS", url, "Authorization Violation"),
        InvalidSettings("EVENTCORE_STORE", f"cannot use {url}"),
    ]

    for error in errors:
        assert SECRET not in str(error)
        assert SECRET not in repr(error)
        assert SECRET not in repr(error.args)


def test_the_logging_filter_masks_messages_and_tracebacks() -> None:
    url = f"postgresql://app:{SECRET}@db/x"
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("tests.redaction")
    logger.addHandler(handler)
    try:
        logger.warning("connecting to %s", url)
        try:
            raise ValueError(f"driver failed for {url}")
        except ValueError:
            logger.exception("it broke")
    finally:
        logger.removeHandler(handler)

    written = stream.getvalue()
    assert SECRET not in written
    assert "connecting to postgresql://app:***@db/x" in written
    assert "ValueError: driver failed for postgresql://app:***@db/x" in written
