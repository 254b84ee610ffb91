"""``--json`` on the inspect commands (one object per line, the documented field names),
and tables that keep the time and the reason whole on an 80-column terminal (issue 9,
defect 21)."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import sqlite3
from typing import Any

from typer.testing import CliRunner, Result

from eventcore.store import open_store
from eventcore.types import StreamId
from tests.cli.conftest import CORRELATION, HISTORY, invoke
from tests.cli.samples import LETTERS

EVENT_FIELDS = [
    "position",
    "stream_id",
    "version",
    "event_id",
    "type",
    "schema_version",
    "recorded_at",
    "metadata",
]
LETTER_FIELDS = [
    "letter_id",
    "group",
    "topic",
    "message_id",
    "key",
    "status",
    "claimed_by",
    "claimed_until",
    "attempts",
    "failed_at",
    "error_type",
    "reason",
    "event_type",
]
ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")


def records(result: Result) -> list[dict[str, Any]]:
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    found = [json.loads(line) for line in lines]
    assert all(isinstance(each, dict) for each in found)
    return found


def test_streams_list(runner: CliRunner, populated: str) -> None:
    found = records(invoke(runner, "streams", "list", "--store", populated, "--json"))

    assert found == [
        {"stream_id": "account-alice", "version": 2, "last_position": 3},
        {"stream_id": "account-bob", "version": 2, "last_position": 4},
        {"stream_id": "order-7", "version": 1, "last_position": 5},
    ]


def test_streams_show_and_events_tail_give_the_same_event_records(
    runner: CliRunner, populated: str
) -> None:
    shown = records(
        invoke(runner, "streams", "show", "account-alice", "--store", populated, "--json")
    )
    tailed = records(invoke(runner, "events", "tail", "--store", populated, "--json"))

    assert [event["position"] for event in tailed] == [1, 2, 3, 4, 5]
    assert shown == [event for event in tailed if event["stream_id"] == "account-alice"]
    for event, (stream, event_type, payload) in zip(tailed, HISTORY, strict=True):
        assert list(event) == [*EVENT_FIELDS, "data"]
        assert (event["stream_id"], event["type"]) == (stream, event_type)
        assert event["data"] == json.loads(payload)
        assert event["metadata"] == {"correlation_id": CORRELATION}
        assert ISO_UTC.fullmatch(event["recorded_at"])


def test_a_stored_payload_that_is_not_json_comes_base64_encoded(
    runner: CliRunner, populated: str
) -> None:
    # Stores refuse such payloads at append now (InvalidPayload); a store written by an
    # older eventcore may still hold one, and inspecting it must show it, not fail.
    async def append_then_corrupt() -> None:
        from tests.builders import new_event

        async with await open_store(populated) as store:
            stream = StreamId("blobs")
            await store.append({stream: [new_event("Blob", b"{}")]}, expected={stream: 0})
        with sqlite3.connect(populated.removeprefix("sqlite://")) as connection:
            connection.execute(
                "UPDATE events SET data = ? WHERE stream_id = 'blobs'", (b"\x00\xffraw",)
            )

    asyncio.run(append_then_corrupt())
    found = records(invoke(runner, "streams", "show", "blobs", "--store", populated, "--json"))

    assert "data" not in found[0]
    assert base64.b64decode(found[0]["data_base64"]) == b"\x00\xffraw"


def test_dlq_list_and_show(runner: CliRunner, bus_url: str) -> None:
    listed = records(invoke(runner, "dlq", "list", "--bus", bus_url, "--json"))

    assert [letter["letter_id"] for letter in listed] == [each.letter_id for each in LETTERS]
    first = listed[0]
    assert list(first) == LETTER_FIELDS
    assert first["reason"] == LETTERS[0].reason  # whole, never cut
    assert first["event_type"] == "Deposited"
    assert listed[1]["event_type"] is None
    assert first["failed_at"] == "2026-11-26T12:01:00.000000Z"

    shown = records(invoke(runner, "dlq", "show", LETTERS[3].letter_id, "--bus", bus_url, "--json"))
    assert len(shown) == 1
    assert {key: shown[0][key] for key in LETTER_FIELDS} == listed[3]
    assert base64.b64decode(shown[0]["body_base64"]) == LETTERS[3].body
    envelope = records(
        invoke(runner, "dlq", "show", LETTERS[0].letter_id, "--bus", bus_url, "--json")
    )
    assert envelope[0]["body"]["type"] == "Deposited"


def test_projections_list_and_status(runner: CliRunner, urls: tuple[str, str]) -> None:
    store_url, target_url = urls
    listed = records(invoke(runner, "projections", "list", "--target", target_url, "--json"))

    assert len(listed) == 1
    version = listed[0]
    assert list(version) == [
        "name",
        "version",
        "state",
        "tables",
        "created_at",
        "sources",
        "events",
    ]
    assert (version["name"], version["version"], version["state"]) == ("order_summary", 1, "live")
    assert version["sources"] == [{"source": "main", "position": 300, "events": version["events"]}]
    assert ISO_UTC.fullmatch(version["created_at"])

    args = ("projections", "status", "order_summary", "--target", target_url, "--json")
    without_store = records(invoke(runner, *args))
    with_store = records(invoke(runner, *args, "--store", store_url))
    assert without_store[0]["lag"] is None
    assert with_store[0]["lag"] == 10  # ten events appended after the catch-up
    assert list(with_store[0]) == [
        "name",
        "version",
        "state",
        "source",
        "position",
        "lag",
        "events",
        "events_per_second",
        "updated_at",
    ]


def test_notes_stay_off_stdout(runner: CliRunner, populated: str) -> None:
    result = invoke(runner, "streams", "list", "--store", populated, "--json", "--limit", "1")

    assert len(records(result)) == 1
    assert "more may follow" in result.stderr


NARROW = {"COLUMNS": "80"}


def test_an_80_column_stream_table_keeps_every_time_and_type_whole(
    runner: CliRunner, populated: str
) -> None:
    events = records(invoke(runner, "events", "tail", "--store", populated, "--json"))
    result = invoke(runner, "streams", "show", "account-alice", "--store", populated, env=NARROW)

    assert result.exit_code == 0, result.output
    assert max(len(line) for line in result.stdout.splitlines()) <= 80
    for event in events:
        if event["stream_id"] == "account-alice":
            shown = event["recorded_at"].replace("T", " ")[:23] + "Z"
            assert shown in result.stdout
            assert f"│ {event['type']} " in result.stdout


def test_an_80_column_dead_letter_list_keeps_every_reason_whole(
    runner: CliRunner, bus_url: str
) -> None:
    result = invoke(runner, "dlq", "list", "--bus", bus_url, env=NARROW)

    assert result.exit_code == 0, result.output
    for letter in LETTERS:
        assert letter.reason.strip() in result.stdout
        assert letter.failed_at.strftime("%Y-%m-%d %H:%M:%S.000Z") in result.stdout


def test_an_80_column_status_table_keeps_its_cells_whole(
    runner: CliRunner, urls: tuple[str, str]
) -> None:
    store_url, target_url = urls
    result = invoke(
        runner,
        *("projections", "status", "order_summary"),
        *("--target", target_url, "--store", store_url),
        env=NARROW,
    )

    assert result.exit_code == 0, result.output
    assert "…" not in result.stdout
    assert re.search(r"│ \d+s ago\s*│", result.stdout)
    assert max(len(line) for line in result.stdout.splitlines()) <= 80
