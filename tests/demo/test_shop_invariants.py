"""The shop's invariant checker catches what it is there to catch: each rule fails on a
store tampered with in the way that rule forbids, and says where."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from eventcore import Event, EventRegistry, EventStore, Metadata, StreamId
from eventcore.demo.shop import analytics, inventory, orders, payments
from eventcore.demo.shop.invariants import check_invariants
from eventcore.demo.shop.runner import Plan, RunningShop, place_orders
from tests.demo.shop_sites import shop_on


async def _append(
    store: EventStore, stream: StreamId, event: Event, metadata: Metadata | None = None
) -> None:
    encoded = EventRegistry([type(event)]).encode(event, metadata=metadata or Metadata())
    version = await store.stream_version(stream)
    await store.append({stream: [encoded]}, expected={stream: version})


async def _a_completed_order(shop: RunningShop) -> tuple[str, int]:
    """An order that completed, and its total."""
    for order_id, (_, status) in sorted(shop.ended_at.items()):
        if status == "completed":
            [placed, *_] = await shop.stores["orders"].read_stream(orders.order_stream(order_id))
            event = orders.orders_registry().decode(placed)
            assert isinstance(event, orders.OrderPlaced)
            return order_id, event.total
    raise AssertionError("no order completed")


async def completed_twice(shop: RunningShop) -> None:
    order_id, total = await _a_completed_order(shop)
    again = orders.OrderCompleted(order_id=order_id, total=total, skus=())
    await _append(shop.stores["orders"], orders.order_stream(order_id), again)


async def released_what_was_not_held(shop: RunningShop) -> None:
    order_id, _ = await _a_completed_order(shop)
    released = inventory.StockReleased(order_id=order_id, quantity=1)
    await _append(shop.stores["inventory"], inventory.stock_stream("mug"), released)


async def refunded_a_completed_order(shop: RunningShop) -> None:
    order_id, total = await _a_completed_order(shop)
    refund = payments.PaymentRefunded(order_id=order_id, amount=total, charge_id="ch_forged")
    await _append(shop.stores["payments"], payments.payment_stream(order_id), refund)


async def sale_counted_twice(shop: RunningShop) -> None:
    order_id, total = await _a_completed_order(shop)
    again = analytics.SaleCompleted(order_id=order_id, total=total)
    await _append(shop.stores["analytics"], analytics.sale_stream(order_id), again)


async def revenue_changed(shop: RunningShop) -> None:
    # A sale of an order the orders service never had: analytics' totals drift.
    stray = analytics.SaleCompleted(order_id="stray", total=123)
    await _append(shop.stores["analytics"], analytics.sale_stream("stray"), stray)


async def email_in_a_payload(shop: RunningShop) -> None:
    opened = analytics.SaleOpened(order_id="leak", customer="ada@example.com", lines=(), total=0)
    await _append(shop.stores["analytics"], analytics.sale_stream("leak"), opened)


async def card_in_metadata(shop: RunningShop) -> None:
    order_id, _ = await _a_completed_order(shop)
    stream = analytics.sale_stream(order_id)
    [*_, last] = await shop.stores["analytics"].read_stream(stream)
    event = analytics.analytics_registry().decode(last)
    leaky = Metadata(extra={"note": "paid with 4242424242424242"})
    # A copy of a sale with a card number in its metadata (the copy also breaks the
    # count of sales: that is the other rules' business).
    await _append(shop.stores["analytics"], StreamId("notes-1"), event, leaky)


TAMPERINGS: list[tuple[Callable[[RunningShop], Awaitable[None]], str, str]] = [
    (completed_twice, "orders ended", "completed 2×"),
    (released_what_was_not_held, "stock conserved", "gave back 1, held None"),
    (refunded_a_completed_order, "money conserved", "charged 1× netting 0"),
    (sale_counted_twice, "events consumed once", "analytics has 2 SaleCompleted"),
    (revenue_changed, "analytics agrees", "analytics counts"),
    (email_in_a_payload, "no personal data in analytics", "ada@example.com"),
    (card_in_metadata, "no personal data in analytics", "4242424242424242"),
]


@pytest.mark.parametrize(
    ("tamper", "rule", "found"), TAMPERINGS, ids=[tamper.__name__ for tamper, _, _ in TAMPERINGS]
)
async def test_a_tampered_store_breaks_the_rule_that_forbids_it(
    tamper: Callable[[RunningShop], Awaitable[None]], rule: str, found: str, tmp_path: Path
) -> None:
    async with shop_on("memory", tmp_path) as shop:
        await place_orders(shop, Plan(orders=12, customers=4, seed=5), timeout=30)
        before = await check_invariants(shop.stores)
        await tamper(shop)
        after = await check_invariants(shop.stores)
    assert before.holds, "\n".join(before.lines())
    assert not after[rule].holds
    assert found in after[rule].detail
