"""The shop in one process: orders complete or compensate, and the invariants, read from
the services' stores, hold — on memory, SQLite (the embedded default) and NATS with
PostgreSQL."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from eventcore import RetryPolicy
from eventcore.demo.shop import inventory, payments
from eventcore.demo.shop.gateway import GatewayFaults
from eventcore.demo.shop.invariants import check_invariants
from eventcore.demo.shop.orders import PlaceOrder
from eventcore.demo.shop.runner import (
    DECLINED_CARD,
    GATEWAY_BREAKER,
    NOWHERE,
    Plan,
    RunningShop,
    place_orders,
)
from eventcore.demo.shop.saga import SAGA_TYPE
from eventcore.saga import SagaState
from tests.demo.shop_sites import SITES, shop_on

GOOD_CARD = "4242424242424242"
#: Orders per site: fewer where every hop goes over the network.
ORDERS = {"memory": 60, "sqlite": 60, "nats": 30}


def _order(
    order_id: str, *, card: str = GOOD_CARD, country: str = "FR", **items: int
) -> PlaceOrder:
    return PlaceOrder.of(
        order_id,
        customer_email=f"{order_id}@example.com",
        card_number=card,
        items=items or {"kettle": 1},
        country=country,
    )


async def _ended(shop: RunningShop, command: PlaceOrder) -> SagaState:
    await shop.place(command)
    return await shop.sagas.wait(SAGA_TYPE, command.order_id, timeout=30)


async def _why_charge_failed(shop: RunningShop, order_id: str) -> str:
    view = await shop.sagas.manager.show(order_id)
    [charge] = [step for step in view.steps if step.name == "charge"]
    return charge.attempts[-1].reason


@pytest.mark.parametrize("site", list(SITES))
async def test_orders_from_concurrent_customers_end_and_every_invariant_holds(
    site: str, tmp_path: Path
) -> None:
    plan = Plan(orders=ORDERS[site], customers=8, declined=0.15, unshippable=0.15, seed=7)
    async with shop_on(site, tmp_path) as shop:
        await place_orders(shop, plan, timeout=50)
        verdict = await check_invariants(shop.stores)
        statuses = [status for _, status in shop.ended_at.values()]
        # Every message on the bus taken by the group it was for: none parked.
        dead = await shop.bus.dead_letters.count()
    assert verdict.holds, "\n".join(verdict.lines())
    assert statuses.count("completed") + statuses.count("compensated") == plan.orders
    assert statuses.count("completed") > 0
    assert statuses.count("compensated") > 0
    assert dead == 0


async def test_a_good_order_completes_and_ships_its_stock(tmp_path: Path) -> None:
    async with shop_on("memory", tmp_path) as shop:
        state = await _ended(shop, _order("good", kettle=2, mug=1))
        await shop.settle(10)
        kettles = await shop.stores["inventory"].read_stream(inventory.stock_stream("kettle"))
    assert state.status == "completed"
    assert [event.type for event in kettles] == ["StockAdded", "StockReserved", "StockShipped"]


@pytest.mark.parametrize(
    ("command", "undone", "payment_events"),
    [
        # No stock for it: nothing but the acceptance to undo.
        (_order("greedy", kettle=1_000_000), ("accept",), []),
        # The card is declined: the stock is released.
        (_order("declined", card=DECLINED_CARD), ("reserve", "accept"), ["PaymentDeclined"]),
        # No carrier goes there: the charge is refunded, then the stock released.
        (
            _order("nowhere", country=NOWHERE),
            ("charge", "reserve", "accept"),
            ["PaymentCharged", "PaymentRefunded"],
        ),
    ],
    ids=["out-of-stock", "declined", "no-carrier"],
)
async def test_a_failed_step_compensates_the_completed_ones_in_reverse(
    command: PlaceOrder, undone: tuple[str, ...], payment_events: list[str], tmp_path: Path
) -> None:
    async with shop_on("memory", tmp_path) as shop:
        state = await _ended(shop, command)
        await shop.settle(10)
        paid = await shop.stores["payments"].read_stream(payments.payment_stream(command.order_id))
        verdict = await check_invariants(shop.stores)
    assert state.status == "compensated"
    assert state.compensated == undone
    assert [event.type for event in paid] == payment_events
    assert verdict.holds, "\n".join(verdict.lines())


async def test_a_gateway_that_is_down_opens_the_breaker_and_cancels_orders_until_it_is_back(
    tmp_path: Path,
) -> None:
    faults = GatewayFaults()
    async with shop_on("memory", tmp_path, faults) as shop:
        faults.down = True
        during = [await _ended(shop, _order(f"down-{n}")) for n in range(6)]
        first = await _why_charge_failed(shop, "down-0")
        last = await _why_charge_failed(shop, "down-5")
        faults.down = False
        # The breaker lets a probe through once its reset timeout has passed: the time
        # is the behaviour under test, not a wait for something to happen.
        await asyncio.sleep(GATEWAY_BREAKER.reset_timeout)
        after = await _ended(shop, _order("back"))
        await shop.settle(10)
        verdict = await check_invariants(shop.stores)
    assert [state.status for state in during] == ["compensated"] * 6
    # The first call reached the gateway and was refused; after five failures in a row
    # the breaker is open, and the call fails without a request.
    assert "503" in first
    assert "CircuitOpen" in last
    assert after.status == "completed"
    assert verdict.holds, "\n".join(verdict.lines())


async def test_a_slow_and_flaky_gateway_changes_nothing_that_matters(tmp_path: Path) -> None:
    faults = GatewayFaults(slow=0.3, slow_seconds=0.05, flaky=0.2, seed=3)
    plan = Plan(orders=40, customers=8, seed=11)
    async with shop_on("sqlite", tmp_path, faults) as shop:
        await place_orders(shop, plan, timeout=50)
        verdict = await check_invariants(shop.stores)
    assert verdict.holds, "\n".join(verdict.lines())


async def test_a_refund_the_gateway_keeps_refusing_is_stuck_until_an_operator_retries_it(
    tmp_path: Path,
) -> None:
    faults = GatewayFaults(refunds_down=True)
    twice = RetryPolicy(max_attempts=2, initial_delay=0.05, max_delay=0.05)
    async with shop_on("memory", tmp_path, faults, compensation_retry=twice) as shop:
        stuck = await _ended(shop, _order("stuck", country=NOWHERE))
        faults.refunds_down = False
        # The operator waits for the gateway to be back: by then payments' breaker,
        # opened by the refusals, lets a probe through.
        await asyncio.sleep(GATEWAY_BREAKER.reset_timeout)
        retried = await shop.sagas.manager.retry("stuck", operator="ops", note="refunds back")
        done = await shop.sagas.wait(SAGA_TYPE, "stuck", after=retried, timeout=30)
        await shop.settle(10)
        verdict = await check_invariants(shop.stores)
    assert stuck.status == "stuck"
    # Refused by the gateway, then by payments' breaker once it opened.
    assert (stuck.stuck_reason or "").startswith("compensating 'charge' failed 2 times; last: ")
    assert done.status == "compensated"
    assert done.compensated == ("charge", "reserve", "accept")
    assert verdict.holds, "\n".join(verdict.lines())


async def test_a_charge_repeated_under_its_key_names_the_charge_recorded_first(
    tmp_path: Path,
) -> None:
    async with shop_on("memory", tmp_path) as shop:
        first = await shop.payments.charge("key-1", "o-9", 2_500, GOOD_CARD)
        shop.gateway.charges.clear()  # a gateway restarted without its books
        again = await shop.payments.charge("key-1", "o-9", 2_500, GOOD_CARD)
        paid = await shop.stores["payments"].read_stream(payments.payment_stream("o-9"))
    assert again == first
    assert [event.type for event in paid] == ["PaymentCharged"]
