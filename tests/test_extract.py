import pytest
from selfrepair.agents.code.extract import (
    ExtractionError,
    code_blocks,
    extract_candidate,
    merge_code,
)

ORIGINAL = '''"""Arithmetic."""
import math


def add(a, b):
    return a - b


def double(x):
    return add(x, x)


if __name__ == "__main__":
    print(add(1, 2))
'''
FILES = {"calc.py": ORIGINAL}


def fix(reply, files=FILES, base=None, entry="calc.py"):
    return extract_candidate(reply, files, base or files, entry)


def test_function_only_reply_replaces_that_function_and_keeps_the_rest():
    reply = "Here is the fix:\n```python\ndef add(a, b):\n    return a + b\n\nprint(add(2, 3))\n```\nDone."
    new = fix(reply).files["calc.py"]
    assert "return a + b" in new and "return a - b" not in new
    assert "import math" in new and "def double(x):" in new and 'if __name__ == "__main__":' in new
    assert "print(add(2, 3))" not in new  # example usage is dropped


def test_whole_program_reply_keeps_new_imports_and_helpers():
    reply = (
        "```python\nimport operator\n\ndef add(a, b):\n    return total(a, b)\n\n"
        "def total(a, b):\n    return plus(a, b)\n\ndef plus(a, b):\n    return operator.add(a, b)\n```"
    )
    new = fix(reply).files["calc.py"]
    assert new.index("import operator") < new.index("def add")
    # a helper the fix calls, and the helper's own helper, go after the file's definitions
    for helper in ("def total", "def plus"):
        assert new.index(helper) > new.index("def double") and new.index(helper) < new.index(
            "__main__"
        )
    compile(new, "calc.py", "exec")


def test_a_new_definition_nothing_uses_is_left_out():
    # A small model's fix often comes with a test or an example function of its own: dead code
    # in the module under repair, and an edit beyond the fix.
    reply = (
        "```python\ndef add(a, b):\n    return a + b\n\n"
        "def test_add_small_numbers():\n    assert add(1, 2) == 3\n\nclass Example:\n    pass\n```"
    )
    assert fix(reply).files["calc.py"] == ORIGINAL.replace("a - b", "a + b")


def test_a_reply_that_replaces_nothing_keeps_its_definitions():
    new = fix("```python\ndef subtract(a, b):\n    return a - b\n```").files["calc.py"]
    assert "def subtract(a, b):" in new and "def add(a, b):" in new


def test_several_blocks_are_merged_in_order_and_other_languages_ignored():
    reply = "```bash\npytest\n```\n```python\ndef add(a, b):\n    return a + b\n```\n```python\ndef double(x):\n    return 2 * x\n```"
    new = fix(reply).files["calc.py"]
    assert "return a + b" in new and "return 2 * x" in new and "pytest" not in new


def test_block_cut_off_by_max_tokens_is_used():
    assert code_blocks("```python\ndef add(a, b):\n    return a + b\n")[0].code.startswith(
        "def add"
    )


def test_bare_code_without_fences():
    new = fix("Sure!\ndef add(a, b):\n    return a + b\nThis adds the numbers.").files["calc.py"]
    assert "return a + b" in new


def test_unparseable_reply_replaces_the_file_so_the_tests_report_it():
    new = fix("```python\ndef add(a, b)\n    return a + b\n```").files["calc.py"]
    assert new == "def add(a, b)\n    return a + b\n"


@pytest.mark.parametrize(
    "reply, reason",
    [
        ("I cannot help with that.", "no code"),
        ("```python\n" + ORIGINAL + "```", "same as the code"),
        ("```python\nx = 1\n```", "no function or class"),
    ],
)
def test_reply_without_usable_code_is_an_extraction_error(reply, reason):
    with pytest.raises(ExtractionError, match=reason):
        fix(reply)


def test_method_reply_replaces_the_method_inside_its_class():
    original = "class Box:\n    def size(self):\n        return 0\n\n    def name(self):\n        return 'box'\n"
    new = merge_code(original, "def size(self):\n    return 1\n")
    assert (
        new
        == "class Box:\n    def size(self):\n        return 1\n\n    def name(self):\n        return 'box'\n"
    )


def test_decorated_function_is_replaced_with_its_decorators():
    original = "import functools\n\n@functools.cache\ndef f(n):\n    return n\n"
    new = merge_code(original, "@functools.lru_cache(None)\ndef f(n):\n    return n + 1\n")
    assert (
        "@functools.cache" not in new
        and "@functools.lru_cache(None)\ndef f(n):\n    return n + 1" in new
    )


def test_candidate_is_whole_relative_to_the_task_and_multi_file_targets_by_name():
    files = {"a.py": "def f():\n    return 1\n", "b.py": "def g():\n    return 1\n"}
    first = extract_candidate("```python\ndef f():\n    return 2\n```", files, files, None)
    assert set(first.files) == {"a.py"}
    base = files | first.files
    second = extract_candidate("```python\ndef g():\n    return 2\n```", files, base, None)
    assert second.files == {"a.py": "def f():\n    return 2\n", "b.py": "def g():\n    return 2\n"}


def test_block_naming_its_file():
    files = {"a.py": "def f():\n    return 1\n", "pkg/b.py": "X = 1\n"}
    candidate = extract_candidate("```python\n# b.py\nX = 2\n```", files, files, None)
    assert candidate.files == {"pkg/b.py": "# b.py\nX = 2\n"}


# -- keeping what the model did not mean to change (issue 16: the demo's fix deleted the docstring)

DOCUMENTED = '''def add(a, b):
    """Return the sum of a and b."""
    # Both are ints.
    total = a - b  # the bug
    return total
'''


def test_a_reply_without_the_docstring_keeps_the_original_docstring():
    new = merge_code(DOCUMENTED, "def add(a, b):\n    total = a + b\n    return total\n")
    assert new == DOCUMENTED.replace("a - b  # the bug", "a + b")


def test_comments_and_lines_of_the_same_code_are_kept_as_written():
    # The reply drops the comments, requotes the docstring and rewrites two lines: only
    # those two change.
    reply = "def add(a, b):\n    '''Return the sum of a and b.'''\n    total = a+b\n    return (total)\n"
    new = merge_code(DOCUMENTED, reply)
    assert new == DOCUMENTED.replace("a - b  # the bug", "a+b").replace(
        "return total", "return (total)"
    )
    respaced = merge_code(DOCUMENTED, "def add( a, b ):\n    total = a + b\n    return  total\n")
    assert respaced == DOCUMENTED.replace("a - b  # the bug", "a + b")


def test_what_the_reply_did_change_is_taken_as_it_wrote_it():
    reply = (
        'def add(a, b):\n    """Add them."""\n    # Sum without a temporary.\n    return a + b\n'
    )
    new = merge_code(DOCUMENTED, reply)
    assert '"""Add them."""' in new and "Return the sum" not in new  # its own docstring: its choice
    assert "# Sum without a temporary." in new and "return a + b" in new and "total" not in new
    assert new.index("# Both are ints.") < new.index(
        "# Sum without"
    )  # the original's comment stays
    compile(new, "add.py", "exec")


def test_a_method_keeps_its_docstring_and_the_whole_reply_can_still_be_asked_for():
    original = 'class Box:\n    def size(self):\n        """How many."""\n        return len(self.items) - 1\n'
    reply = "def size(self):\n    return len(self.items)\n"
    assert merge_code(original, reply) == original.replace(" - 1", "")
    assert (
        merge_code(original, reply, keep_original=False)
        == "class Box:\n    def size(self):\n        return len(self.items)\n"
    )


def test_merging_a_reply_parses_each_text_once(monkeypatch):
    """Merging parses the original, the reply and each definition's lines for several checks;
    each distinct text is parsed once (parsing was most of what extraction cost the loop)."""
    import ast
    from collections import Counter

    from selfrepair.agents.code import extract

    extract._parse.cache_clear()
    extract._line_keys.cache_clear()
    extract._string_value.cache_clear()
    parsed = Counter()
    real = ast.parse

    def counting(source, *args, **kwargs):
        parsed[source] += 1
        return real(source, *args, **kwargs)

    monkeypatch.setattr(ast, "parse", counting)
    reply = "```python\ndef add(a, b):\n    '''Return the sum of a and b.'''\n    total = a+b\n    return (total)\n```"
    files = {"add.py": DOCUMENTED}
    new = extract_candidate(reply, files, files, "add.py").files["add.py"]
    assert new == DOCUMENTED.replace("a - b  # the bug", "a+b").replace(
        "return total", "return (total)"
    )
    assert parsed and max(parsed.values()) == 1, parsed.most_common(3)


def test_a_reply_with_nothing_to_take_back_is_not_compared_again(monkeypatch):
    """When keeping the original's lines changes nothing (no comment dropped, no line written
    differently), the merge is the reply as it stands; comparing syntax trees to confirm that
    was most of what merging a reply cost."""
    from selfrepair.agents.code import extract

    def compared(*args):
        raise AssertionError("syntax trees compared")

    monkeypatch.setattr(extract, "_same_code", compared)
    old = ["def add(a, b):", "    return a - b"]
    new = ["def add(a, b):", "    total = a + b", "    return total"]
    assert extract.keep_unchanged(old, new) == new
    assert merge_code(
        "def add(a, b):\n    return a - b\n", "def add(a, b):\n    return a + b\n"
    ) == ("def add(a, b):\n    return a + b\n")
