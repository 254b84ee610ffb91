"""The shop's invariants, checked from the outside: by reading each service's store.

Nothing here trusts what the running services say about themselves; every check is a
fold of stored events, so it holds after a crash, on any backend, and for a store
someone tampered with. ``check_invariants`` returns one ``Invariant`` per rule:

- **orders ended**: every order placed is completed or cancelled, once; its saga
  completed or compensated accordingly; no saga running, compensating, stuck or aborted.
- **stock conserved**: per product, the units added = available + reserved + shipped,
  none ever negative; nothing is left reserved; what shipped is what completed orders
  bought.
- **money conserved**: charges − refunds = the total of the completed orders; a
  completed order is charged its total once and not refunded, a cancelled one nets 0.
- **events consumed once**: every ``OrderCompleted`` shipped its stock once (inventory's
  subscription), and every order event became exactly one sale event in analytics
  (the hub and analytics' subscription).
- **analytics agrees**: analytics' totals equal the orders service's.
- **no personal data in analytics**: no customer's e-mail, no card number, nor anything
  shaped like one, anywhere in analytics' store (payloads and metadata).
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import msgspec

from eventcore import Event, EventRegistry, EventStore, StoredEvent
from eventcore.demo.shop import analytics, inventory, orders, payments
from eventcore.saga import SagaManager

__all__ = ["Invariant", "Verdict", "check_invariants"]

#: How many violations of one rule a verdict spells out.
SHOWN = 5

_EMAIL = re.compile(rb"[\w.+-]+@[\w-]+\.[\w.-]+")
# A run of 13-19 digits standing alone; inside a hexadecimal string (a hash, an id) a
# run of digits is no card number.
_CARD = re.compile(rb"(?<![0-9A-Fa-f])\d{13,19}(?![0-9A-Fa-f])")


@dataclass(frozen=True)
class Invariant:
    """One rule, whether it holds, and what was found (the first violations, if any)."""

    name: str
    holds: bool
    detail: str

    def line(self) -> str:
        return f"{'ok  ' if self.holds else 'FAIL'} {self.name}: {self.detail}"


@dataclass(frozen=True)
class Verdict:
    invariants: tuple[Invariant, ...]

    @property
    def holds(self) -> bool:
        return all(invariant.holds for invariant in self.invariants)

    def __getitem__(self, name: str) -> Invariant:
        for invariant in self.invariants:
            if invariant.name == name:
                return invariant
        raise KeyError(name)

    def lines(self) -> list[str]:
        return [invariant.line() for invariant in self.invariants]


def _rule(name: str, problems: Sequence[str], fine: str) -> Invariant:
    if not problems:
        return Invariant(name, True, fine)
    shown = "; ".join(problems[:SHOWN])
    more = f" (and {len(problems) - SHOWN} more)" if len(problems) > SHOWN else ""
    return Invariant(name, False, shown + more)


async def _read(store: EventStore, types: Sequence[type[Event]]) -> list[tuple[StoredEvent, Event]]:
    registry = EventRegistry(types)
    found: list[tuple[StoredEvent, Event]] = []
    async for batch in store.read_all(types=[kind.__event_type__ for kind in types]):
        found.extend((stored, registry.decode(stored)) for stored in batch)
    return found


@dataclass
class _Order:
    placed: orders.OrderPlaced | None = None
    completed: int = 0
    cancelled: int = 0


async def check_invariants(stores: Mapping[str, EventStore]) -> Verdict:
    """Check every rule against the stores of ``orders``, ``inventory``, ``payments``
    and ``analytics`` (shipping's own records are not needed by any rule)."""
    book: dict[str, _Order] = defaultdict(_Order)
    for _, event in await _read(stores[orders.SERVICE], orders.EVENTS):
        if not isinstance(event, orders.OrderEvent):
            continue
        order = book[event.order_id]
        if isinstance(event, orders.OrderPlaced):
            order.placed = event
        elif isinstance(event, orders.OrderCompleted):
            order.completed += 1
        elif isinstance(event, orders.OrderCancelled):
            order.cancelled += 1
    completed = {key: o for key, o in book.items() if o.completed == 1 and o.placed is not None}
    sagas = {
        line.saga_id: line.status
        for line in await SagaManager.over(
            stores[orders.SERVICE], EventRegistry(), service=orders.SERVICE
        ).list()
    }
    return Verdict(
        (
            _orders_ended(book, sagas),
            await _stock(stores[inventory.SERVICE], completed),
            await _money(stores[payments.SERVICE], book),
            *await _consumed_and_analytics(stores, book),
        )
    )


def _orders_ended(book: Mapping[str, _Order], sagas: Mapping[str, str]) -> Invariant:
    problems: list[str] = []
    for order_id, order in sorted(book.items()):
        saga = sagas.get(order_id)
        if order.placed is None:
            problems.append(f"order {order_id} ended but was never placed")
        elif (order.completed, order.cancelled) == (1, 0):
            if saga != "completed":
                problems.append(f"order {order_id} completed, its saga is {saga}")
        elif (order.completed, order.cancelled) == (0, 1):
            if saga != "compensated":
                problems.append(f"order {order_id} cancelled, its saga is {saga}")
        else:
            problems.append(
                f"order {order_id} completed {order.completed}×, cancelled {order.cancelled}×"
                f" (saga {saga})"
            )
    for saga_id, status in sorted(sagas.items()):
        if saga_id not in book:
            problems.append(f"saga {saga_id} ({status}) has no order")
    ended = Counter(("completed" if o.completed else "cancelled") for o in book.values())
    fine = (
        f"{len(book)} orders: {ended['completed']} completed, {ended['cancelled']} cancelled;"
        " no saga running or stuck"
    )
    return _rule("orders ended", problems, fine)


async def _stock(store: EventStore, completed: Mapping[str, _Order]) -> Invariant:
    problems: list[str] = []
    added: Counter[str] = Counter()
    available: Counter[str] = Counter()
    shipped: Counter[str] = Counter()
    held: dict[str, dict[str, int]] = defaultdict(dict)
    shipped_for: Counter[tuple[str, str]] = Counter()
    for stored, event in await _read(store, inventory.EVENTS):
        product: str = stored.stream_id
        if isinstance(event, inventory.StockAdded):
            added[product] += event.quantity
            available[product] += event.quantity
        elif isinstance(event, inventory.StockReserved):
            if event.order_id in held[product]:
                problems.append(f"{product}: order {event.order_id} reserved twice")
            held[product][event.order_id] = event.quantity
            available[product] -= event.quantity
        elif isinstance(event, inventory.StockReleased | inventory.StockShipped):
            quantity = held[product].pop(event.order_id, None)
            if quantity != event.quantity:
                problems.append(
                    f"{product}: order {event.order_id} gave back {event.quantity}, held {quantity}"
                )
            if isinstance(event, inventory.StockReleased):
                available[product] += event.quantity
            else:
                shipped[product] += event.quantity
                shipped_for[(product, event.order_id)] += 1
        reserved = sum(held[product].values())
        if min(available[product], reserved, shipped[product]) < 0:
            problems.append(f"{product}: went negative at position {stored.position}")
    for product, units in sorted(added.items()):
        reserved = sum(held[product].values())
        if units != available[product] + reserved + shipped[product]:
            problems.append(
                f"{product}: {units} added ≠ {available[product]} available + {reserved}"
                f" reserved + {shipped[product]} shipped"
            )
        if reserved:
            problems.append(f"{product}: {reserved} units still reserved")
    bought: Counter[str] = Counter()
    for order in completed.values():
        for line in order.placed.lines if order.placed is not None else ():
            bought[inventory.stock_stream(line.sku)] += line.quantity
    for product in sorted(set(bought) | set(shipped)):
        if bought[product] != shipped[product]:
            problems.append(
                f"{product}: completed orders bought {bought[product]}, {shipped[product]} shipped"
            )
    fine = f"{len(added)} products, {sum(shipped.values())} units shipped, none reserved"
    return _rule("stock conserved", problems, fine)


async def _money(store: EventStore, book: Mapping[str, _Order]) -> Invariant:
    problems: list[str] = []
    charged: Counter[str] = Counter()
    refunded: Counter[str] = Counter()
    charges: Counter[str] = Counter()
    for _, event in await _read(store, payments.EVENTS):
        if isinstance(event, payments.PaymentCharged):
            charged[event.order_id] += event.amount
            charges[event.order_id] += 1
        elif isinstance(event, payments.PaymentRefunded):
            refunded[event.order_id] += event.amount
    sales = 0
    for order_id in sorted(set(book) | set(charged)):
        order = book.get(order_id)
        net = charged[order_id] - refunded[order_id]
        if order is not None and order.placed is not None and order.completed == 1:
            sales += order.placed.total
            if (net, charges[order_id]) != (order.placed.total, 1):
                problems.append(
                    f"order {order_id} completed for {order.placed.total},"
                    f" charged {charges[order_id]}× netting {net}"
                )
        elif net != 0:
            problems.append(f"order {order_id} not completed, yet nets {net}")
    total = sum(charged.values()) - sum(refunded.values())
    if total != sales:
        problems.append(f"charges − refunds = {total}, completed orders total {sales}")
    fine = (
        f"charges {sum(charged.values())} − refunds {sum(refunded.values())}"
        f" = {total} = completed orders' total"
    )
    return _rule("money conserved", problems, fine)


async def _consumed_and_analytics(
    stores: Mapping[str, EventStore], book: Mapping[str, _Order]
) -> tuple[Invariant, Invariant, Invariant]:
    problems: list[str] = []
    # Inventory's subscription: a completed order ships each of its lines once.
    shipped: Counter[tuple[str, str]] = Counter()
    for stored, event in await _read(stores[inventory.SERVICE], [inventory.StockShipped]):
        if isinstance(event, inventory.StockShipped):
            shipped[(event.order_id, stored.stream_id)] += 1
    expected: Counter[tuple[str, str]] = Counter()
    for order_id, order in book.items():
        if order.completed and order.placed is not None:
            for line in order.placed.lines:
                expected[(order_id, inventory.stock_stream(line.sku))] += 1
    for key in sorted(set(shipped) | set(expected)):
        if shipped[key] != expected[key]:
            problems.append(f"inventory shipped {key[1]} for order {key[0]} {shipped[key]}×")
    # Analytics' subscription, through the hub: one sale event per order event.
    sale_events = await _read(stores[analytics.SERVICE], analytics.EVENTS)
    seen: Counter[tuple[str, str]] = Counter()
    for _, event in sale_events:
        if isinstance(
            event, analytics.SaleOpened | analytics.SaleCompleted | analytics.SaleCancelled
        ):
            seen[(type(event).__name__, event.order_id)] += 1
    wanted: Counter[tuple[str, str]] = Counter()
    for order_id, order in book.items():
        wanted[("SaleOpened", order_id)] += 1 if order.placed is not None else 0
        wanted[("SaleCompleted", order_id)] += order.completed
        wanted[("SaleCancelled", order_id)] += order.cancelled
    for key in sorted(set(seen) | set(wanted)):
        if seen[key] != wanted[key]:
            problems.append(
                f"analytics has {seen[key]} {key[0]} of order {key[1]}, not {wanted[key]}"
            )
    consumed = _rule(
        "events consumed once",
        problems,
        f"{sum(expected.values())} shipments by inventory, {sum(wanted.values())} sale"
        " events in analytics, each once",
    )

    totals = analytics.fold_sales(event for _, event in sale_events)
    placed = [o.placed for o in book.values() if o.placed is not None]
    ours = analytics.SalesTotals(
        placed=len(placed),
        completed=sum(o.completed for o in book.values()),
        cancelled=sum(o.cancelled for o in book.values()),
        revenue=sum(o.placed.total for o in book.values() if o.completed and o.placed),
        customers=len({p.customer_email for p in placed}),
    )
    agrees = _rule(
        "analytics agrees",
        [] if totals == ours else [f"analytics counts {totals}, orders {ours}"],
        f"{totals.completed} sales, revenue {totals.revenue}, {totals.customers} customers",
    )

    leaks: list[str] = []
    secrets = {p.customer_email.encode() for p in placed} | {p.card_number.encode() for p in placed}
    async for batch in stores[analytics.SERVICE].read_all():
        for stored in batch:
            text = stored.data + msgspec.json.encode(stored.metadata)
            found = [s.decode() for s in secrets if s and s in text]
            found += [m.decode() for m in _EMAIL.findall(text) + _CARD.findall(text)]
            if found:
                leaks.append(f"{stored.type} at {stored.position} holds {sorted(set(found))}")
    private = _rule(
        "no personal data in analytics",
        leaks,
        "no e-mail address or card number in analytics' store",
    )
    return consumed, agrees, private
