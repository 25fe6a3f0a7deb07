from shop.money import format_price, parse_price, split_evenly


def test_format_price():
    assert format_price(350) == "$3.50"
    assert format_price(-5) == "-$0.05"


def test_parse_price_with_cents():
    assert parse_price("$3.50") == 350
    assert parse_price(" 12.05 ") == 1205


def test_parse_price_whole_dollars():
    assert parse_price("$7") == 700


def test_parse_price_one_decimal():
    assert parse_price("$3.5") == 350


def test_split_evenly():
    assert split_evenly(100, 3) == [34, 33, 33]
