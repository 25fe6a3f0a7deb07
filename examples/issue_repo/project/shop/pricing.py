"""Discounts: percentages off, and a bulk discount for large quantities."""

BULK_THRESHOLD = 10
BULK_PERCENT = 5


def apply_discount(cents: int, percent: float) -> int:
    """The price after `percent` off, rounded to the nearest cent."""
    if not 0 <= percent <= 100:
        raise ValueError(f"discount must be between 0 and 100, not {percent}")
    return round(cents * (100 - percent) / 100)


def bulk_discount(quantity: int) -> float:
    """Percent off for buying `quantity` of one item."""
    return BULK_PERCENT if quantity >= BULK_THRESHOLD else 0
