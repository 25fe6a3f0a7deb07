"""Localisation: the repository map, ranked against an issue and its traceback."""

from __future__ import annotations

from pathlib import Path

from selfrepair.agents.code import localise

ISSUE = (
    Path(__file__).resolve().parent.parent / "examples" / "issue_repo" / "ISSUE.md"
).read_text()


def test_map_lists_definitions_with_signatures(issue_repo: Path) -> None:
    defs = {d.qualname: d for d in localise.repository_map(issue_repo)}
    assert defs["parse_price"].signature == "def parse_price(text: str) -> int"
    assert (
        defs["parse_price"].path,
        defs["parse_price"].start_line,
        defs["parse_price"].end_line,
    ) == ("shop/money.py", 11, 15)
    assert defs["Cart"].kind == "class" and defs["Cart.add_from_text"].kind == "method"
    assert defs["Cart"].start_line == 19  # its decorator's line counts


def test_traceback_ranks_the_innermost_function_first(issue_repo: Path) -> None:
    ranked = localise.rank(localise.repository_map(issue_repo), ISSUE)
    assert [r.definition.qualname for r in ranked[:2]] == ["parse_price", "Cart.add_from_text"]
    assert "traceback line 14" in ranked[0].reasons


def test_pytest_traceback_and_term_overlap(issue_repo: Path) -> None:
    pytest_style = (
        "tests/test_cart.py:7: in test_total\n    cart.total()\nshop/pricing.py:11: ValueError"
    )
    frames = localise.traceback_frames(pytest_style)
    assert frames == [
        localise.Frame("tests/test_cart.py", 7, "test_total"),
        localise.Frame("shop/pricing.py", 11, ""),
    ]
    defs = localise.repository_map(issue_repo)
    assert localise.rank(defs, pytest_style)[0].definition.name == "apply_discount"
    # No traceback: the words of the issue decide.
    words_only = "The bulk discount threshold is wrong: buying ten of one item should not get a bulk discount"
    assert localise.rank(defs, words_only)[0].definition.name == "bulk_discount"


def test_context_fits_the_budget_and_leads_with_the_top_code(issue_repo: Path) -> None:
    ranked = localise.rank(localise.repository_map(issue_repo), ISSUE)
    small = localise.render_context(issue_repo, ranked, budget_tokens=200)
    assert localise.approx_tokens(small) <= 200 + 40  # the section headers are outside the budget
    assert 'dollars, cents = text.split(".")' in small
    large = localise.render_context(issue_repo, ranked, budget_tokens=4000)
    assert (
        "shop/pricing.py" in large
        and "def apply_discount(cents: int, percent: float) -> int" in large
    )
    assert large.index("shop/money.py (lines 11-15)") < large.index("shop/cart.py (lines 28-30)")


def test_syntax_errors_are_located() -> None:
    assert localise.syntax_errors("def f(x):\n    return x\n") == []
    errors = localise.syntax_errors("def f(x:\n    return x\n")
    assert errors and errors[0].startswith("line ")
    assert localise.python_syntax_error("def f():\nreturn 1\n") is not None
