"""The fake card gateway: a small local HTTP service standing in for a card processor.

``POST /charges`` ``{"card_number", "amount"}`` answers 201 ``{"charge_id"}``, or 402
``{"reason"}`` for a declined card (one ending in ``DECLINED_SUFFIX``); ``POST
/refunds`` ``{"charge_id"}`` answers 200. Both need an ``Idempotency-Key`` header and
run once per key: a repeat gets the first answer, as a real processor's would.

``GatewayFaults`` makes it behave like one on a bad day: some requests are slow, some
get a 503 before anything happens, and ``down`` refuses everything with a 503 until it
is cleared — so the payments service's client retries, its circuit breaker opens, and
the order saga compensates.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from starlette.applications import Starlette

__all__ = ["DECLINED_SUFFIX", "CardGateway", "GatewayFaults", "serve_gateway"]

#: Cards ending in these digits are declined.
DECLINED_SUFFIX = "0002"


@dataclass
class GatewayFaults:
    """How the gateway misbehaves: a share of requests ``slow`` by ``slow_seconds``, a
    share refused with a 503 (``flaky``), everything refused while ``down``, refunds
    alone while ``refunds_down``."""

    slow: float = 0.0
    slow_seconds: float = 0.05
    flaky: float = 0.0
    down: bool = False
    refunds_down: bool = False
    seed: int = 0
    rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)


@dataclass
class CardGateway:
    """The gateway's books: every answer given, by idempotency key."""

    faults: GatewayFaults = field(default_factory=GatewayFaults)
    charges: dict[str, tuple[int, dict[str, object]]] = field(default_factory=dict)
    refunds: dict[str, tuple[int, dict[str, object]]] = field(default_factory=dict)
    #: charge id → amount, for the charges not refunded.
    open_charges: dict[str, int] = field(default_factory=dict)

    async def _misbehave(self) -> bool:
        """True when this request is to be refused with a 503."""
        faults = self.faults
        if faults.down or faults.rng.random() < faults.flaky:
            return True
        if faults.rng.random() < faults.slow:
            await asyncio.sleep(faults.slow_seconds)
        return False

    async def charge(
        self, key: str, card_number: str, amount: int
    ) -> tuple[int, dict[str, object]]:
        if await self._misbehave():
            return 503, {"reason": "the card processor is unavailable"}
        answer = self.charges.get(key)
        if answer is None:
            if card_number.endswith(DECLINED_SUFFIX):
                answer = (402, {"reason": "card declined"})
            elif amount <= 0:
                answer = (422, {"reason": "the amount must be positive"})
            else:
                charge_id = f"ch_{uuid.uuid4().hex[:16]}"
                self.open_charges[charge_id] = amount
                answer = (201, {"charge_id": charge_id})
            self.charges[key] = answer
        return answer

    async def refund(self, key: str, charge_id: str) -> tuple[int, dict[str, object]]:
        if self.faults.refunds_down or await self._misbehave():
            return 503, {"reason": "the card processor is unavailable"}
        answer = self.refunds.get(key)
        if answer is None:
            amount = self.open_charges.pop(charge_id, None)
            answer = (404, {"reason": "no such charge"}) if amount is None else (200, {})
            self.refunds[key] = answer
        return answer


def _app(gateway: CardGateway) -> Starlette:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def read(request: Request) -> tuple[str, dict[str, object]] | JSONResponse:
        key = request.headers.get("idempotency-key")
        if not key:
            return JSONResponse({"reason": "an Idempotency-Key header is required"}, 400)
        try:
            body = await request.json()
        except ValueError:
            return JSONResponse({"reason": "the body is not JSON"}, 400)
        if not isinstance(body, dict):
            return JSONResponse({"reason": "the body is not a JSON object"}, 400)
        return key, body

    async def charges(request: Request) -> JSONResponse:
        read_ = await read(request)
        if isinstance(read_, JSONResponse):
            return read_
        key, body = read_
        card, amount = body.get("card_number"), body.get("amount")
        if not isinstance(card, str) or not isinstance(amount, int):
            return JSONResponse({"reason": "card_number (text) and amount (cents) needed"}, 422)
        status, answer = await gateway.charge(key, card, amount)
        return JSONResponse(answer, status)

    async def refunds(request: Request) -> JSONResponse:
        read_ = await read(request)
        if isinstance(read_, JSONResponse):
            return read_
        key, body = read_
        charge_id = body.get("charge_id")
        if not isinstance(charge_id, str):
            return JSONResponse({"reason": "charge_id (text) needed"}, 422)
        status, answer = await gateway.refund(key, charge_id)
        return JSONResponse(answer, status)

    return Starlette(
        routes=[
            Route("/charges", charges, methods=["POST"]),
            Route("/refunds", refunds, methods=["POST"]),
        ]
    )


@asynccontextmanager
async def serve_gateway(gateway: CardGateway, host: str = "127.0.0.1") -> AsyncIterator[str]:
    """Serve ``gateway`` on a free local port for the block; yields its base URL."""
    import uvicorn

    config = uvicorn.Config(_app(gateway), host=host, port=0, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                await task  # it failed to start: its error says why
                raise RuntimeError("the card gateway stopped before it started")
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        await task
