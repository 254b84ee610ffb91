"""Logs that carry the trace: a record made inside a command's span has its trace and
span ids; the JSON formatter writes one valid object per line with them."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from eventcore import Executor, StreamId, Writes, open_store
from eventcore.observability import JsonFormatter, TraceContextFilter, tracing_hooks
from tests.observability.chain import PlaceOrder, registry

LOGGER = "tests.observability.orders"


class LoggedOrder(PlaceOrder):
    """Logs while it decides, as a command's code would: inside the command's span."""

    def handle(self, state: bool) -> Writes:
        logging.getLogger(LOGGER).info(
            "placing order %s\nsecond line", self.order, extra={"order": self.order}
        )
        return super().handle(state)


@pytest.fixture
def lines() -> Iterator[io.StringIO]:
    """What the ``LOGGER`` logs, one JSON object per line, through the filter."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(TraceContextFilter())
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(LOGGER)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield out
    finally:
        logger.removeHandler(handler)


async def place_logged(order: str = "1") -> ReadableSpan:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    hooks = tracing_hooks(provider)
    async with await open_store("memory://", hooks=hooks) as store:
        executor = Executor(store, registry, hooks=hooks)
        await executor.execute(LoggedOrder(stream=StreamId(f"order-{order}"), order=order))
    [span] = [span for span in exporter.get_finished_spans() if span.name == "LoggedOrder"]
    return span


def objects(out: io.StringIO) -> list[dict[str, object]]:
    text = out.getvalue()
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


async def test_a_record_made_inside_a_command_carries_its_trace_and_span_ids(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.handler.addFilter(TraceContextFilter())
    with caplog.at_level(logging.INFO, logger=LOGGER):
        span = await place_logged()
    [record] = [record for record in caplog.records if record.name == LOGGER]
    assert span.context is not None
    assert record.trace_id == f"{span.context.trace_id:032x}"  # type: ignore[attr-defined]
    assert record.span_id == f"{span.context.span_id:016x}"  # type: ignore[attr-defined]


async def test_the_json_formatter_writes_one_object_per_line_with_the_ids(
    lines: io.StringIO,
) -> None:
    span = await place_logged()
    logging.getLogger(LOGGER).warning("outside any span")

    inside, outside = objects(lines)
    assert span.context is not None
    assert inside["trace_id"] == f"{span.context.trace_id:032x}"
    assert inside["span_id"] == f"{span.context.span_id:016x}"
    # The message's own line break stays inside its JSON string.
    assert inside["message"] == "placing order 1\nsecond line"
    assert (inside["level"], inside["logger"], inside["order"]) == ("INFO", LOGGER, "1")
    assert isinstance(inside["time"], str)
    assert inside["time"].endswith("Z")
    assert "trace_id" not in outside
    assert outside["message"] == "outside any span"


def test_the_json_formatter_keeps_exceptions_and_writes_odd_values_as_text(
    lines: io.StringIO,
) -> None:
    logger = logging.getLogger(LOGGER)
    loop: list[object] = []
    loop.append(loop)
    try:
        raise ValueError("bad\nvalue")
    except ValueError:
        logger.exception("failed", extra={"where": object(), "loop": loop})

    [line] = objects(lines)
    assert isinstance(line["exception"], str)
    assert "ValueError: bad" in line["exception"]
    assert isinstance(line["where"], str)
    assert line["loop"] == "[[...]]"
    assert line["message"] == "failed"


def test_the_formatter_alone_reads_the_current_span() -> None:
    provider = TracerProvider()
    tracer = provider.get_tracer("test")
    formatter = JsonFormatter()
    record = logging.LogRecord(LOGGER, logging.INFO, __file__, 1, "hello", None, None)
    with tracer.start_as_current_span("work") as span:
        line = json.loads(formatter.format(record))
    assert line["span_id"] == f"{span.get_span_context().span_id:016x}"
