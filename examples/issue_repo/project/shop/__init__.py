"""A tiny shop: prices in cents, carts, discounts."""

from shop.cart import Cart
from shop.money import format_price, parse_price

__all__ = ["Cart", "format_price", "parse_price"]
