"""A shopping cart: lines of (name, unit price, quantity)."""

from dataclasses import dataclass, field

from shop.money import format_price, parse_price
from shop.pricing import apply_discount, bulk_discount


@dataclass
class Line:
    name: str
    unit_cents: int
    quantity: int

    def subtotal(self) -> int:
        return apply_discount(self.unit_cents * self.quantity, bulk_discount(self.quantity))


@dataclass
class Cart:
    lines: list[Line] = field(default_factory=list)

    def add(self, name: str, unit_cents: int, quantity: int = 1) -> None:
        if quantity <= 0:
            raise ValueError("quantity must be positive")
        self.lines.append(Line(name, unit_cents, quantity))

    def add_from_text(self, name: str, price_text: str, quantity: int = 1) -> None:
        """Add an item priced as people write it, e.g. '$3.50'."""
        self.add(name, parse_price(price_text), quantity)

    def total(self) -> int:
        return sum(line.subtotal() for line in self.lines)

    def receipt(self) -> str:
        rows = [f"{line.quantity} x {line.name}: {format_price(line.subtotal())}" for line in self.lines]
        return "\n".join(rows + [f"total: {format_price(self.total())}"])
