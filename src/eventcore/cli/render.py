"""How the command line shows things: rich tables for people, one line per event for logs.

Consoles are made per call rather than at import, so they write wherever ``sys.stdout``
points at the time (a test runner swaps it) and pick up the terminal width then.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from rich.console import Console
from rich.table import Table
from rich.text import Text

from eventcore.redaction import redact
from eventcore.types import StoredEvent, StreamHead

__all__ = [
    "abbreviate",
    "error",
    "event_line",
    "events_table",
    "note",
    "one_line",
    "stderr",
    "stdout",
    "streams_table",
    "timestamp",
]

#: Payload characters shown in a table cell and in a log line.
TABLE_PAYLOAD = 60
LINE_PAYLOAD = 160


def stdout() -> Console:
    return Console(highlight=False)


def stderr() -> Console:
    return Console(stderr=True, highlight=False)


def error(message: str) -> None:
    # One line whatever the message holds (a driver's message may span several), so a
    # script can read it and a person sees it whole. Printed as plain text: a stream id or
    # URL in the message may contain "[", which rich would otherwise read as markup.
    # Redacted here too, for messages the command line puts together itself.
    line = " ".join(redact(message).split())
    stderr().print(Text(f"error: {line}", style="bold red"), soft_wrap=True)


def note(message: str) -> None:
    stderr().print(Text(redact(message), style="dim"), soft_wrap=True)


def abbreviate(data: bytes, width: int) -> str:
    """A payload as one line of at most ``width`` characters (``…`` marks a cut)."""
    text = one_line(data.decode("utf-8", errors="replace"))
    return text if len(text) <= width else text[: width - 1] + "…"


def one_line(text: str) -> str:
    """``text`` with its control characters escaped: they would break a one-line layout."""
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode() for ch in text)


_TIMESTAMP_SHAPE = "2026-11-26 13:46:56.123Z"


def timestamp(moment: datetime) -> str:
    """UTC to the millisecond, e.g. ``2026-11-26 13:46:56.123Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


def streams_table(heads: Sequence[StreamHead]) -> Table:
    table = Table(title=None, header_style="bold")
    table.add_column("stream", overflow="fold")
    table.add_column("version", justify="right")
    table.add_column("last position", justify="right")
    for head in heads:
        table.add_row(head.stream_id, str(head.version), str(head.last_position))
    return table


#: Below this many columns the id columns are left out of ``events_table``: with them,
#: every column of an 80-column table is cut to a few characters.
WIDE_TABLE = 120


def events_table(stream_id: str, events: Iterable[StoredEvent], width: int) -> Table:
    """A stream's events for a terminal ``width`` columns wide. The time and the type
    are never cut; on a narrow terminal the event and correlation ids give way (a
    caption says where to find them) and the payload takes the width that is left."""
    wide = width >= WIDE_TABLE
    caption = None if wide else "event and correlation ids: a wider terminal, or --json"
    table = Table(title=Text(stream_id, style="bold"), caption=caption, header_style="bold")
    table.add_column("version", justify="right", no_wrap=True)
    table.add_column("position", justify="right", no_wrap=True)
    table.add_column("type", style="magenta", overflow="fold")
    table.add_column("recorded at", no_wrap=True, min_width=len(_TIMESTAMP_SHAPE))
    if wide:
        table.add_column("event id", style="dim", overflow="ellipsis")
    table.add_column("payload", overflow="ellipsis", ratio=1)
    if wide:
        table.add_column("correlation id", style="dim", overflow="ellipsis")
    for event in events:
        cells: list[str | Text] = [
            str(event.version),
            str(event.position),
            event.type,
            timestamp(event.recorded_at),
        ]
        if wide:
            cells.append(str(event.event_id))
        cells.append(Text(abbreviate(event.data, TABLE_PAYLOAD)))
        if wide:
            cells.append(event.metadata.correlation_id or "")
        table.add_row(*cells)
    return table


def event_line(event: StoredEvent) -> Text:
    """One event of the global log as one line: position, stream@version, type, payload."""
    return Text.assemble(
        (f"{event.position:>8}", "cyan"),
        "  ",
        (event.stream_id, "bold"),
        (f"@{event.version}", "dim"),
        "  ",
        (event.type, "magenta"),
        "  ",
        abbreviate(event.data, LINE_PAYLOAD),
    )
