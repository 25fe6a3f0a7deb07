"""Suspects from the calls of failing tests: through the tests' own helpers, into the one
constructor a class call runs, and through a dispatch by name prefix (agents.code.suspects).
Each repository is written here; no test is run, the failing test is described as pytest
reports it."""

from pathlib import Path

from selfrepair.agents.code.suspects import suspects

from selfrepair.types import TestCase


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def failing(name: str, traceback: str) -> TestCase:
    return TestCase(name=name, outcome="failed", traceback=traceback)


def ranked(root: Path, issue: str, case: TestCase) -> list[str]:
    return [r.definition.qualname for r in suspects(root, issue, [case], limit=50)]


def reached(root: Path, issue: str, case: TestCase) -> set[str]:
    """The suspects a call from the failing test leads to (the file's words credit all)."""
    return {
        r.definition.qualname
        for r in suspects(root, issue, [case], limit=50)
        if any("call" in reason and "crash" not in reason for reason in r.reasons)
    }


def test_what_a_test_class_helper_and_its_set_up_call_is_called_by_the_test(tmp_path):
    """The test asserts through a helper of its class: the helper's call of `count` is the
    test's, and what `count` calls is one call further; setUp runs before the test too. A
    function that only shares the issue's words ranks below them."""
    root = write(
        tmp_path,
        {
            "items.py": (
                "def pieces(text):\n    return text.split(',')\n\n\n"
                "def count(text, separator):\n    return len(pieces(text))\n\n\n"
                "def separator_for(kind):\n    return ';'\n\n\n"
                "def describe_count(text):\n    return 'the count of ' + text\n"
            ),
            "tests/test_items.py": (
                "import unittest\n\nfrom items import count, separator_for\n\n\n"
                "class TestCount(unittest.TestCase):\n"
                "    def setUp(self):\n        self.separator = separator_for('list')\n\n"
                "    def assert_count(self, text, expected):\n"
                "        self.assertEqual(count(text, self.separator), expected)\n\n"
                "    def test_two(self):\n        self.assert_count('a;b', 2)\n"
            ),
        },
    )
    case = failing(
        "tests/test_items.py::TestCount::test_two",
        "tests/test_items.py:14: in test_two\n    self.assert_count('a;b', 2)\n"
        "tests/test_items.py:11: in assert_count\nE   AssertionError: 1 != 2",
    )
    order = ranked(root, "The count of a text is wrong.", case)
    assert order[:2] == ["count", "separator_for"]
    assert order.index("pieces") < order.index("describe_count")


def test_calling_a_class_reaches_its_constructor_and_no_other(tmp_path):
    root = write(
        tmp_path,
        {
            "units.py": (
                "class Meter:\n    def __init__(self, scale):\n        self.scale = scale * 10\n\n"
                "    def read(self, value):\n        return value * self.scale\n\n\n"
                "class Basket:\n    def __init__(self):\n        self.items = []\n\n\n"
                "def build(scale):\n    return Meter(scale)\n"
            ),
            "test_units.py": (
                "from units import build\n\n\ndef test_read():\n    assert build(2).read(3) == 6\n"
            ),
        },
    )
    case = failing("test_units.py::test_read", "test_units.py:5: in test_read\nE   assert 60 == 6")
    found = reached(root, "A reading comes out ten times too large.", case)
    assert "Meter.__init__" in found
    assert "Basket.__init__" not in found


def test_a_method_dispatched_by_a_name_prefix_is_reached(tmp_path):
    """getattr(self, "visit_" + kind): the call names no method, its prefix names them all."""
    root = write(
        tmp_path,
        {
            "walk.py": (
                "class Walker:\n    def walk(self, node):\n"
                "        return getattr(self, 'visit_' + node[0])(node)\n\n"
                "    def visit_number(self, node):\n        return node[1] + 1\n\n"
                "    def visit_negate(self, node):\n        return -self.walk(node[1])\n\n"
                "    def reset(self):\n        return None\n"
            ),
            "test_walk.py": (
                "from walk import Walker\n\n\n"
                "def test_number():\n    assert Walker().walk(('number', 2)) == 2\n"
            ),
        },
    )
    case = failing("test_walk.py::test_number", "test_walk.py:5: in test_number\nE   assert 3 == 2")
    found = reached(root, "A wrong result.", case)
    assert {"Walker.visit_number", "Walker.visit_negate"} <= found
    assert "Walker.reset" not in found
