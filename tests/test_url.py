"""Store URLs: what parses, and a clear ``InvalidUrl`` for everything that does not."""

from __future__ import annotations

from typing import Any

import pytest

from eventcore.errors import InvalidInput, InvalidUrl, PayloadTooLarge
from eventcore.store import StoreUrl, open_store
from eventcore.store.memory import MemoryStore
from eventcore.types import StreamId
from tests.builders import new_event


@pytest.mark.parametrize(
    ("url", "backend", "path"),
    [
        ("memory://", "memory", ""),
        ("MEMORY://", "memory", ""),
        ("sqlite:///tmp/events.db", "sqlite", "/tmp/events.db"),
        ("sqlite://data/events.db", "sqlite", "data/events.db"),
        ("postgresql://postgres@127.0.0.1:5432/test", "postgres", "postgres@127.0.0.1:5432/test"),
        ("postgres://db.internal/events", "postgres", "db.internal/events"),
    ],
)
def test_parse_picks_the_backend_and_location(url: str, backend: str, path: str) -> None:
    parsed = StoreUrl.parse(url)

    assert (parsed.backend, parsed.path, parsed.raw) == (backend, path, url)


def test_parse_reads_query_options() -> None:
    parsed = StoreUrl.parse("sqlite:///tmp/e.db?synchronous=NORMAL&max_payload_bytes=2048")

    assert parsed.option("synchronous", "FULL") == "NORMAL"
    assert parsed.option("missing", "default") == "default"
    assert parsed.int_option("max_payload_bytes", 1) == 2048
    assert parsed.int_option("absent", 7) == 7


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("", "expected scheme://"),
        ("events.db", "expected scheme://"),
        ("/tmp/events.db", "expected scheme://"),
        ("mysql://localhost/db", "unknown scheme 'mysql'"),
        ("sqlite://", "no file path"),
        ("sqlite://?synchronous=FULL", "no file path"),
        ("memory://somewhere", "memory:// takes no path"),
        ("postgresql://", "expected postgresql://user@host:port/database"),
        ("sqlite:///tmp/e.db?flag", "malformed query string"),
        ("postgresql://[::1/db", "malformed"),
        ("postgresql://localhost:port/db", "port"),
    ],
    ids=[
        "empty",
        "bare-path",
        "absolute-path",
        "unknown-scheme",
        "sqlite-no-path",
        "sqlite-only-options",
        "memory-with-path",
        "postgres-no-host",
        "malformed-query",
        "postgres-bad-ipv6",
        "postgres-bad-port",
    ],
)
def test_parse_rejects_bad_urls_with_a_reason(url: str, reason: str) -> None:
    with pytest.raises(InvalidUrl) as caught:
        StoreUrl.parse(url)

    assert reason in caught.value.reason
    assert caught.value.url == url
    assert reason in str(caught.value)
    assert isinstance(caught.value, InvalidInput)


def test_unknown_scheme_lists_the_known_ones() -> None:
    with pytest.raises(
        InvalidUrl, match=r"known: memory://, postgres://, postgresql://, sqlite://"
    ):
        StoreUrl.parse("redis://localhost")


@pytest.mark.parametrize("url", [None, 42, b"memory://"], ids=repr)
def test_parse_rejects_a_url_that_is_not_a_string(url: Any) -> None:
    with pytest.raises(InvalidUrl):
        StoreUrl.parse(url)


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("max_payload_bytes=big", "max_payload_bytes='big' is not an integer"),
        ("max_payload_bytes=0", "max_payload_bytes must be at least 1"),
        ("max_payload_bytes=-5", "max_payload_bytes must be at least 1"),
    ],
)
def test_int_option_rejects_bad_values(query: str, reason: str) -> None:
    parsed = StoreUrl.parse(f"sqlite:///tmp/e.db?{query}")

    with pytest.raises(InvalidUrl, match=reason):
        parsed.int_option("max_payload_bytes", 10)


def test_reject_unknown_options_names_them_and_the_known_ones() -> None:
    parsed = StoreUrl.parse("sqlite:///tmp/e.db?synchronous=FULL&colour=red&size=1")

    with pytest.raises(InvalidUrl, match=r"unknown option\(s\) colour, size; known: synchronous"):
        parsed.reject_unknown_options({"synchronous"})


def test_reject_unknown_options_accepts_known_ones() -> None:
    StoreUrl.parse("sqlite:///tmp/e.db?synchronous=FULL").reject_unknown_options({"synchronous"})


async def test_open_store_memory_takes_the_payload_limit_from_the_url() -> None:
    store = await open_store("memory://?max_payload_bytes=3")
    try:
        assert isinstance(store, MemoryStore)
        with pytest.raises(PayloadTooLarge, match="at most 3"):
            await store.append(
                {StreamId("a"): [new_event(data=b"four")]}, expected={StreamId("a"): 0}
            )
    finally:
        await store.aclose()


async def test_open_store_memory_rejects_unknown_options() -> None:
    with pytest.raises(InvalidUrl, match="unknown option"):
        await open_store("memory://?colour=red")


async def test_open_store_rejects_a_bad_url_before_opening_anything() -> None:
    with pytest.raises(InvalidUrl, match="unknown scheme"):
        await open_store("ftp://example")
