"""Tracing in one process, spans kept by the SDK's in-memory exporter: a request into
``shop`` that causes commands in ``stock`` and then ``shipping`` (over a memory bus) is
one trace with the right parents and links; events store their command's context; a
batch mixing requests starts its own trace linked to each; projections trace their
batches; with the API alone the context still flows."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, StatusCode, TraceFlags

from eventcore import (
    EventStore,
    MemoryTarget,
    MemoryTransaction,
    Metadata,
    Projection,
    ProjectionRunner,
    Source,
    StoredEvent,
    StreamId,
    handles,
    open_store,
)
from eventcore.instrumentation import NO_HOOKS
from eventcore.messaging import open_bus
from eventcore.observability import OpenTelemetryHooks, tracing_hooks
from eventcore.testing import Services
from tests.observability.chain import SERVICES, OrderPlaced, PlaceOrder, registry, wire

PATIENCE = 20.0
ORDER = StreamId("order-1")


@dataclass
class Traced:
    exporter: InMemorySpanExporter
    hooks: OpenTelemetryHooks

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def named(self, name: str) -> list[ReadableSpan]:
        return [span for span in self.spans() if span.name == name]

    def one(self, name: str) -> ReadableSpan:
        [span] = self.named(name)
        return span


@pytest.fixture
def traced() -> Traced:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return Traced(exporter, tracing_hooks(provider))


@dataclass
class Chain:
    stores: dict[str, EventStore]
    services: Services


@pytest.fixture
async def chain(traced: Traced) -> AsyncIterator[Chain]:
    bus = await open_bus("memory://?partitions=1")
    stores = {name: await open_store("memory://", hooks=traced.hooks) for name in SERVICES}
    services = Services(bus)
    for name, store in stores.items():
        service = wire(name, store, services.bus, traced.hooks)
        if service.relay is not None:
            services.relays.append((service.relay, store))
        if service.subscriber is not None:
            sub = service.subscriber
            services.subscribers.append((sub, sub.topic, sub.group))
    async with bus:
        yield Chain(stores, services)
        for store in stores.values():
            await store.aclose()


def ids(span: ReadableSpan) -> tuple[int, int]:
    assert span.context is not None
    return span.context.trace_id, span.context.span_id


def parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def linked(span: ReadableSpan) -> list[tuple[int, int]]:
    return [(link.context.trace_id, link.context.span_id) for link in span.links]


def traceparent_of(span: ReadableSpan) -> str:
    assert span.context is not None
    context = span.context
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"


async def place(chain: Chain, traced: Traced, order: str = "1") -> None:
    executor = wire("shop", chain.stores["shop"], chain.services.bus, traced.hooks).executor
    await executor.execute(PlaceOrder(stream=StreamId(f"order-{order}"), order=order))


async def test_a_request_through_three_services_is_one_trace_with_the_right_parents(
    chain: Chain, traced: Traced
) -> None:
    async with chain.services.running():
        await place(chain, traced)
        await chain.services.until_idle(timeout=PATIENCE)

    spans = traced.spans()
    assert len({ids(span)[0] for span in spans}) == 1, [span.name for span in spans]
    place_span = traced.one("PlaceOrder")
    reserve, schedule = traced.one("ReserveStock"), traced.one("ScheduleShipment")
    publish_orders, publish_reservations = (
        traced.one("publish orders"),
        traced.one("publish reservations"),
    )
    process_orders, process_reservations = (
        traced.one("process orders"),
        traced.one("process reservations"),
    )
    # The parent chain: the request, its publish and its handling in the next service,
    # whose command is the parent of what it publishes and of the third service's work.
    assert place_span.parent is None
    assert parent_of(publish_orders) == ids(place_span)[1]
    assert parent_of(process_orders) == ids(place_span)[1]
    assert parent_of(reserve) == ids(process_orders)[1]
    assert parent_of(publish_reservations) == ids(reserve)[1]
    assert parent_of(process_reservations) == ids(reserve)[1]
    assert parent_of(schedule) == ids(process_reservations)[1]
    # Each publish is linked to the context of the event it carries.
    assert linked(publish_orders) == [ids(place_span)]
    assert linked(publish_reservations) == [ids(reserve)]
    # Every command's store calls are its children, named after the database.
    for command in (place_span, reserve, schedule):
        children = [span for span in spans if parent_of(span) == ids(command)[1]]
        assert sorted(span.name for span in children if span.kind is SpanKind.CLIENT) == [
            "append",
            "read_stream",
        ]
        for child in children:
            if child.kind is SpanKind.CLIENT:
                assert child.attributes is not None
                assert child.attributes["db.system"] == "memory"
    assert publish_orders.kind is SpanKind.PRODUCER
    assert process_orders.kind is SpanKind.CONSUMER
    assert process_orders.attributes is not None
    assert process_orders.attributes["messaging.system"] == "memory"
    assert process_orders.attributes["messaging.destination.name"] == "orders"
    assert process_orders.attributes["messaging.consumer.group.name"] == "stock"
    assert process_orders.attributes["eventcore.delivery.outcome"] == "handled"
    assert place_span.attributes is not None
    assert place_span.attributes["eventcore.command.outcome"] == "written"
    assert place_span.attributes["eventcore.command.streams_read"] == 1
    assert place_span.attributes["eventcore.command.attempts"] == 1
    assert place_span.attributes["eventcore.command.conflicts"] == 0


async def test_every_event_stores_the_context_of_the_command_that_wrote_it(
    chain: Chain, traced: Traced
) -> None:
    async with chain.services.running():
        await place(chain, traced)
        await chain.services.until_idle(timeout=PATIENCE)

    written = {
        "PlaceOrder": ("shop", "order-1"),
        "ReserveStock": ("stock", "stock-1"),
        "ScheduleShipment": ("shipping", "shipment-1"),
    }
    for command, (service, stream) in written.items():
        [event] = await chain.stores[service].read_stream(StreamId(stream))
        assert event.metadata.traceparent == traceparent_of(traced.one(command))


async def test_a_batch_of_two_requests_starts_its_own_trace_linked_to_both(
    chain: Chain, traced: Traced
) -> None:
    # Both written before the relay runs: they go out in one batch.
    await place(chain, traced, "1")
    await place(chain, traced, "2")
    async with chain.services.running():
        await chain.services.until_idle(timeout=PATIENCE)

    commands = traced.named("PlaceOrder")
    [publish] = traced.named("publish orders")
    assert publish.parent is None
    assert ids(publish)[0] not in {ids(command)[0] for command in commands}
    assert sorted(linked(publish)) == sorted(ids(command) for command in commands)
    # Each delivery still continues its own request's trace.
    processed = {parent_of(span) for span in traced.named("process orders")}
    assert processed == {ids(command)[1] for command in commands}


async def test_a_conflict_is_an_event_on_the_command_span_and_a_failure_its_status(
    traced: Traced,
) -> None:
    async with await open_store("memory://", hooks=traced.hooks) as store:
        executor = wire("shop", store, await open_bus("memory://"), traced.hooks).executor
        rival = registry.encode(OrderPlaced(order="x"))
        real_append = store.append
        raced = False

        async def racing_append(*args: object, **kwargs: object) -> object:
            nonlocal raced
            if not raced:
                raced = True
                await real_append({ORDER: [rival]}, expected={ORDER: 0})
            return await real_append(*args, **kwargs)  # type: ignore[arg-type]

        store.append = racing_append  # type: ignore[method-assign]
        await executor.execute(PlaceOrder(stream=ORDER, order="1"))

    span = traced.one("PlaceOrder")
    assert span.attributes is not None
    # The rival's write made the first read stale: one conflict, a second attempt, and
    # then the order was found placed already, so nothing was written.
    assert span.attributes["eventcore.command.conflicts"] == 1
    assert span.attributes["eventcore.command.attempts"] == 2
    assert [event.name for event in span.events] == ["conflict"]
    refused = [s for s in traced.named("append") if s.status.status_code is StatusCode.ERROR]
    assert len(refused) == 1
    assert refused[0].attributes is not None
    assert refused[0].attributes["error.type"] == "ConcurrencyConflict"


class Orders(Projection):
    name = "orders"

    @handles(OrderPlaced)
    async def placed(self, tx: MemoryTransaction, event: OrderPlaced, stored: StoredEvent) -> None:
        tx.state[event.order] = True


async def test_a_projection_batch_is_traced_linked_to_its_events(traced: Traced) -> None:
    async with await open_store("memory://", hooks=traced.hooks) as store:
        executor = wire("shop", store, await open_bus("memory://"), traced.hooks).executor
        await executor.execute(PlaceOrder(stream=ORDER, order="1"))
        runner = ProjectionRunner(
            Orders(), MemoryTarget(), Source("shop", store, registry), hooks=traced.hooks
        )
        await runner.catch_up()

    command, apply = traced.one("PlaceOrder"), traced.one("apply orders")
    assert linked(apply) == [ids(command)]
    assert parent_of(apply) == ids(command)[1]
    assert apply.attributes is not None
    assert apply.attributes["eventcore.events"] == 1


async def test_without_an_sdk_tracing_hooks_are_none_and_a_handled_context_still_flows() -> None:
    # No SDK: the global tracer provider is the API's own, which records nothing.
    assert tracing_hooks() is NO_HOOKS
    # What Received.run passes a handler's command: the envelope's context, kept.
    incoming = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    async with await open_store("memory://") as store:
        executor = wire("shop", store, await open_bus("memory://"), tracing_hooks()).executor
        await executor.execute(
            PlaceOrder(stream=ORDER, order="1"), metadata=Metadata(traceparent=incoming)
        )
        [event] = await store.read_stream(ORDER)
    assert event.metadata.traceparent == incoming


async def test_hooks_built_without_an_sdk_pass_on_the_current_span_context() -> None:
    incoming = SpanContext(
        trace_id=0x0AF7651916CD43DD8448EB211C80319C,
        span_id=0xB7AD6B7169203331,
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
    )
    hooks = OpenTelemetryHooks()
    async with await open_store("memory://", hooks=hooks) as store:
        executor = wire("shop", store, await open_bus("memory://"), hooks).executor
        # As a web framework's instrumentation leaves it: the request's remote context.
        with trace.use_span(NonRecordingSpan(incoming)):
            await executor.execute(PlaceOrder(stream=ORDER, order="1"))
        [event] = await store.read_stream(ORDER)
    assert event.metadata.traceparent == "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


async def test_a_garbled_traceparent_starts_a_fresh_trace_instead_of_failing(
    traced: Traced,
) -> None:
    async with await open_store("memory://", hooks=traced.hooks) as store:
        executor = wire("shop", store, await open_bus("memory://"), traced.hooks).executor
        await executor.execute(
            PlaceOrder(stream=ORDER, order="1"), metadata=Metadata(traceparent="00-zz-garbage")
        )
        [event] = await store.read_stream(ORDER)
    span = traced.one("PlaceOrder")
    assert span.parent is None
    assert event.metadata.traceparent == traceparent_of(span)


async def test_a_cancelled_command_is_marked_so_and_not_as_an_error(traced: Traced) -> None:
    async with await open_store("memory://", hooks=traced.hooks) as store:
        executor = wire("shop", store, await open_bus("memory://"), traced.hooks).executor
        reading = asyncio.Event()

        async def stuck_read(*args: object, **kwargs: object) -> list[StoredEvent]:
            reading.set()
            await asyncio.Event().wait()
            raise AssertionError("never woken")

        store.read_stream = stuck_read  # type: ignore[method-assign]
        running = asyncio.create_task(executor.execute(ReadingOrder(stream=ORDER, order="1")))
        await reading.wait()
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running

    span = traced.one("ReadingOrder")
    assert span.attributes is not None
    assert span.attributes["eventcore.command.outcome"] == "cancelled"
    assert span.status.status_code is not StatusCode.ERROR


class ReadingOrder(PlaceOrder):
    """Reads its stream first (PlaceOrder does too; named apart to find its span)."""
