"""One service of ``chain.py`` in a process of its own, tracing to an OTLP/HTTP endpoint,
for ``test_tracing_processes.py``.

Usage::

    python -m tests.observability.service_process NAME STORE_URL BUS_URL ENDPOINT

Prints ``{"ready": true}`` once its relay and subscriber run; ``shop`` then places
order 1. Runs until SIGTERM, then stops its workers and flushes its spans before it
exits. Tracing is turned on as a user would: a global tracer provider with a batch
processor and the OTLP exporter, and ``install_hooks(tracing_hooks())`` before anything
is built.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from eventcore import StreamId, open_store
from eventcore.instrumentation import install_hooks
from eventcore.messaging import open_bus
from eventcore.observability import tracing_hooks
from tests.observability.chain import PlaceOrder, wire


async def serve(name: str, store_url: str, bus_url: str) -> None:
    stopping = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopping.set)
    async with await open_store(store_url) as store, await open_bus(bus_url) as bus:
        service = wire(name, store, bus)
        workers = [w for w in (service.relay, service.subscriber) if w is not None]
        tasks = [asyncio.create_task(worker.run()) for worker in workers]
        for worker in workers:
            await worker.ready()
        print(json.dumps({"ready": True}), flush=True)
        if name == "shop":
            await service.executor.execute(PlaceOrder(stream=StreamId("order-1"), order="1"))
        await stopping.wait()
        for worker in workers:
            worker.stop()
        await asyncio.gather(*tasks)


def main() -> None:
    name, store_url, bus_url, endpoint = sys.argv[1:5]
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    # A short delay: the test waits for the last span, not for the default 5 s.
    provider.add_span_processor(
        BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint), schedule_delay_millis=50)
    )
    trace.set_tracer_provider(provider)
    install_hooks(tracing_hooks())
    try:
        asyncio.run(serve(name, store_url, bus_url))
    finally:
        provider.shutdown()  # exports what is still queued


if __name__ == "__main__":
    main()
