"""Edits: applied exactly, or turned into feedback; never a broken file."""

from __future__ import annotations

from pathlib import Path

import pytest
from selfrepair.agents.code.edits import apply_edits, parse_edits

PROJECT = Path(__file__).resolve().parent.parent / "examples" / "issue_repo" / "project"


def read(path: str) -> str | None:
    target = PROJECT / path
    return target.read_text() if target.is_file() else None


GOOD = """The split needs a default for prices without cents.

shop/money.py
```python
<<<<<<< SEARCH
    dollars, cents = text.split(".")
    return int(dollars) * 100 + int(cents)
=======
    dollars, _, cents = text.partition(".")
    return int(dollars) * 100 + int((cents + "00")[:2])
>>>>>>> REPLACE
```
"""


def test_search_replace_applies_exactly() -> None:
    result = apply_edits(GOOD, read)
    assert result.ok and result.feedback() == ""
    new = result.files["shop/money.py"]
    assert new == read("shop/money.py").replace(
        '    dollars, cents = text.split(".")\n    return int(dollars) * 100 + int(cents)\n',
        '    dollars, _, cents = text.partition(".")\n    return int(dollars) * 100 + int((cents + "00")[:2])\n',
    )


def test_non_matching_block_becomes_feedback_with_the_closest_lines() -> None:
    wrong_quotes = GOOD.replace('text.split(".")\n    return', "text.split('.')\n    return", 1)
    result = apply_edits(wrong_quotes, read)
    assert not result.ok and result.files == {}
    feedback = result.feedback()
    assert "edit 1 (shop/money.py): the SEARCH lines do not match" in feedback
    assert (
        '    dollars, cents = text.split(".")\n    return int(dollars) * 100 + int(cents)'
        in feedback
    )
    assert "from line 14" in feedback


def test_one_bad_block_stops_the_whole_reply() -> None:
    two = (
        GOOD
        + """
shop/pricing.py
<<<<<<< SEARCH
BULK_THRESHOLD = 100
=======
BULK_THRESHOLD = 12
>>>>>>> REPLACE
"""
    )
    result = apply_edits(two, read)
    assert (
        result.files == {}
        and len(result.problems) == 1
        and "edit 2 (shop/pricing.py)" in result.problems[0]
    )


def test_ambiguous_block_asks_for_more_context() -> None:
    reply = "shop/cart.py\n<<<<<<< SEARCH\n    quantity: int\n=======\n    quantity: int = 1\n>>>>>>> REPLACE\n"
    content = read("shop/cart.py") + "\n\n@dataclass\nclass Other:\n    quantity: int\n"
    result = apply_edits(reply, lambda path: content)
    assert "match 2 places" in result.feedback()


def test_syntax_breaking_edit_is_refused() -> None:
    broken = GOOD.replace("[:2])\n", "[:2]\n")
    result = apply_edits(broken, read)
    assert not result.ok and result.files == {}
    assert "shop/money.py: after the edits the file does not parse" in result.feedback()
    assert "was never closed" in result.feedback()
    dedented = "shop/money.py\n<<<<<<< SEARCH\n    return int(dollars) * 100 + int(cents)\n=======\nreturn 0\n>>>>>>> REPLACE\n"
    assert "does not parse" in apply_edits(dedented, read).feedback()


def test_whole_function_replaces_its_namesake_with_its_indentation() -> None:
    reply = '''shop/cart.py
```python
def add_from_text(self, name: str, price_text: str, quantity: int = 1) -> None:
    """Add an item priced as people write it, e.g. '$3.50'."""
    self.add(name, parse_price(price_text.strip()), quantity)
```'''
    result = apply_edits(reply, read)
    assert result.ok
    assert (
        "        self.add(name, parse_price(price_text.strip()), quantity)\n"
        in result.files["shop/cart.py"]
    )
    unknown = reply.replace("def add_from_text", "def add_from_json")
    assert "has no function named add_from_json" in apply_edits(unknown, read).feedback()


def test_new_file_and_path_styles() -> None:
    reply = "**shop/tax.py**\n<<<<<<< SEARCH\n=======\nRATE = 8\n>>>>>>> REPLACE\n"
    assert apply_edits(reply, read).files == {"shop/tax.py": "RATE = 8\n"}
    missing = "shop/tax.py\n<<<<<<< SEARCH\nRATE = 7\n=======\nRATE = 8\n>>>>>>> REPLACE\n"
    assert "no such file" in apply_edits(missing, read).feedback()


@pytest.mark.parametrize(
    "reply, problem",
    [
        ("I think the bug is in parse_price.", "no edits found"),
        ("<<<<<<< SEARCH\nx = 1\n=======\nx = 2\n>>>>>>> REPLACE\n", "no file path"),
        ("shop/money.py\n<<<<<<< SEARCH\nx = 1\n=======\nx = 2\n", "without its"),
    ],
)
def test_unreadable_replies_become_feedback(reply: str, problem: str) -> None:
    result = apply_edits(reply, read)
    assert not result.ok and problem in result.feedback()


def test_parse_keeps_reply_order() -> None:
    edits, problems = parse_edits(
        GOOD + "\nshop/cart.py\n```python\ndef total(self) -> int:\n    return 0\n```\n"
    )
    assert problems == [] and [(e.path, e.kind) for e in edits] == [
        ("shop/money.py", "search_replace"),
        ("shop/cart.py", "definition"),
    ]
