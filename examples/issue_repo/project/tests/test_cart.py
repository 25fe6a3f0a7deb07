from shop.cart import Cart


def test_total_with_bulk_discount():
    cart = Cart()
    cart.add("apple", 50, 10)
    cart.add("pear", 120)
    assert cart.total() == 475 + 120


def test_receipt():
    cart = Cart()
    cart.add_from_text("tea", "$2.25", 2)
    assert cart.receipt() == "2 x tea: $4.50\ntotal: $4.50"
