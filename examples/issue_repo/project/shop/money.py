"""Prices are whole cents internally; people type and read dollars."""


def format_price(cents: int) -> str:
    """350 -> '$3.50'."""
    sign = "-" if cents < 0 else ""
    dollars, rest = divmod(abs(cents), 100)
    return f"{sign}${dollars}.{rest:02d}"


def parse_price(text: str) -> int:
    """'$3.50' -> 350 cents."""
    text = text.strip().lstrip("$")
    dollars, cents = text.split(".")
    return int(dollars) * 100 + int(cents)


def split_evenly(cents: int, ways: int) -> list[int]:
    """Split an amount into `ways` parts that differ by at most one cent."""
    if ways <= 0:
        raise ValueError("ways must be positive")
    share, left = divmod(cents, ways)
    return [share + 1 if i < left else share for i in range(ways)]
