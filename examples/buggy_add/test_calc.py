from calc import add


def test_add_small_numbers():
    assert add(2, 3) == 5


def test_add_negative():
    assert add(-1, 1) == 0
