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

from eventcore.types import StoredEvent, StreamHead

__all__ = [
    "abbreviate",
    "error",
    "event_line",
    "events_table",
    "note",
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
    # Printed as plain text: a stream id or URL in the message may contain "[", which
    # rich would otherwise read as markup.
    stderr().print(Text(f"error: {message}", style="bold red"), soft_wrap=True)


def note(message: str) -> None:
    stderr().print(Text(message, style="dim"), soft_wrap=True)


def abbreviate(data: bytes, width: int) -> str:
    """A payload as one line of at most ``width`` characters (``…`` marks a cut)."""
    text = data.decode("utf-8", errors="replace")
    # Control characters would break the one-line-per-event layout; show them escaped.
    text = "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode() for ch in text)
    return text if len(text) <= width else text[: width - 1] + "…"


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


def events_table(stream_id: str, events: Iterable[StoredEvent]) -> Table:
    table = Table(title=Text(stream_id, style="bold"), header_style="bold")
    # On a narrow terminal rich shrinks wrappable columns first, so the short columns
    # that identify an event are never wrapped, and the long ones give way: the time
    # wraps at its space, ids and payload (one word each) are cut with an ellipsis.
    table.add_column("version", justify="right", no_wrap=True)
    table.add_column("position", justify="right", no_wrap=True)
    table.add_column("type", style="magenta", no_wrap=True)
    table.add_column("recorded at")
    table.add_column("event id", style="dim", overflow="ellipsis")
    table.add_column("payload", overflow="ellipsis")
    table.add_column("correlation id", style="dim", overflow="ellipsis")
    for event in events:
        table.add_row(
            str(event.version),
            str(event.position),
            event.type,
            timestamp(event.recorded_at),
            str(event.event_id),
            Text(abbreviate(event.data, TABLE_PAYLOAD)),
            event.metadata.correlation_id or "",
        )
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
