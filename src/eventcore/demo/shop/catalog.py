"""What the shop sells: products, their prices, and an order's lines."""

from __future__ import annotations

import msgspec

__all__ = ["INITIAL_STOCK", "PRICES", "Line", "total_of"]

#: Price of each product, in cents.
PRICES: dict[str, int] = {
    "kettle": 2_500,
    "teapot": 4_000,
    "mug": 900,
    "tray": 1_500,
    "cosy": 700,
}

#: Units of each product in the warehouse when the shop opens.
INITIAL_STOCK: dict[str, int] = dict.fromkeys(PRICES, 10_000)


class Line(msgspec.Struct, frozen=True):
    """One line of an order: so many units of a product, at the price it was sold at."""

    sku: str
    quantity: int
    price: int


def total_of(lines: tuple[Line, ...]) -> int:
    """What an order of these lines costs, in cents."""
    return sum(line.quantity * line.price for line in lines)
