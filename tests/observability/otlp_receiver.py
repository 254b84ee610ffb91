"""A small OTLP/HTTP trace receiver on 127.0.0.1, run by a test in a thread: it parses
each ``ExportTraceServiceRequest`` (protobuf, gzip or not) and keeps its spans."""

from __future__ import annotations

import gzip
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span as SpanMessage

__all__ = ["Received", "Receiver", "receiving"]


@dataclass(frozen=True)
class Received:
    """One span as received: ids as ints, parent None for a root."""

    service: str
    name: str
    kind: str
    trace_id: int
    span_id: int
    parent_id: int | None
    links: tuple[tuple[int, int], ...]
    attributes: dict[str, object]


def _value(any_value: object) -> object:
    kind = any_value.WhichOneof("value")  # type: ignore[attr-defined]
    return getattr(any_value, kind) if kind else None


def _spans(request: ExportTraceServiceRequest) -> Iterator[Received]:
    for resource_spans in request.resource_spans:
        resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                yield Received(
                    service=str(resource.get("service.name")),
                    name=span.name,
                    kind=SpanMessage.SpanKind.Name(span.kind),
                    trace_id=int.from_bytes(span.trace_id, "big"),
                    span_id=int.from_bytes(span.span_id, "big"),
                    parent_id=int.from_bytes(span.parent_span_id, "big")
                    if span.parent_span_id
                    else None,
                    links=tuple(
                        (int.from_bytes(link.trace_id, "big"), int.from_bytes(link.span_id, "big"))
                        for link in span.links
                    ),
                    attributes={a.key: _value(a.value) for a in span.attributes},
                )


class Receiver:
    def __init__(self, server: ThreadingHTTPServer) -> None:
        self._server = server
        self._spans: list[Received] = []
        self._changed = threading.Condition()

    @property
    def endpoint(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/v1/traces"

    def add(self, spans: list[Received]) -> None:
        with self._changed:
            self._spans.extend(spans)
            self._changed.notify_all()

    @property
    def spans(self) -> list[Received]:
        with self._changed:
            return list(self._spans)

    def wait_for(self, found: Callable[[list[Received]], bool], timeout: float) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: found(self._spans), timeout)


@contextmanager
def receiving() -> Iterator[Receiver]:
    """A receiver listening on a free port of 127.0.0.1 until the block ends."""
    receiver: Receiver

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
            receiver.add(list(_spans(request)))
            answer = ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: object) -> None:
            pass  # quiet: the test reports what it needs

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver = Receiver(server)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
