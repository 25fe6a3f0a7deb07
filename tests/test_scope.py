"""The names in scope where a function shown alone lives (agents/code/scope.py): read with
tree-sitter from real files, capped in size, shown in synth's function tasks; and the merge
that keeps a reply's restatement of them out of the function's file."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import pytest
from selfrepair.agents.code import localise
from selfrepair.agents.code.extract import ExtractionError, extract_candidate
from selfrepair.agents.code.scope import describe, scope_of
from selfrepair.factory import output

from selfrepair.loaders import load_synth

TEXTWRAP = Path(textwrap.__file__).read_text(encoding="utf-8")  # a real module of the stdlib

# A module whose method lost its `raise`: the fix needs a name the module imports.
LEXER = '''"""Tokens out of text."""
import string
from json import loads

from pkg.errors import LexerError, EmptyError

DIGITS = set(string.digits)
LONG = {"a": 1, "b": 2, "c": 3, "d": 4, "e": 5, "f": 6, "g": 7, "h": 8, "i": 9, "j": 10, "k": 11}


def helper(text):
    return text.strip()


class Lexer(object):
    WHITESPACE = set(" \\t")

    def __init__(self, text):
        self.text = text
        self.position, self.length = 0, len(text)

    @property
    def done(self):  # past the end
        return self.position >= self.length

    def quoted(self):
        start = self.position
        try:
            return loads(self.text[start:])
        except ValueError as error:
            message = str(error)

    def number(self):
        return int(helper(self.text))
'''
QUOTED = """def quoted(self):
    start = self.position
    try:
        return loads(self.text[start:])
    except ValueError as error:
        message = str(error)
"""
FIXED_BODY = """    start = self.position
    try:
        return loads(self.text[start:])
    except ValueError as error:
        message = str(error)
        raise LexerError(message)
"""


def test_a_methods_scope_has_the_imports_its_class_and_the_module_around_it():
    scope = scope_of("pkg/lexer.py", LEXER, "Lexer.quoted")
    assert scope.text.splitlines() == [
        "Imports: import string; from json import loads; "
        "from pkg.errors import LexerError, EmptyError",
        "Attributes of class Lexer(object): WHITESPACE",
        # in the order assigned, a tuple's targets too
        "Set on self in Lexer.__init__: self.text; self.position; self.length",
        # the method shown is left out; the comment after done's colon is no part of it
        "Other methods of Lexer: __init__(self, text); @property done(self); number(self)",
        "Functions: helper(text)",
        "Constants and other module names: DIGITS; LONG",
    ]
    assert {"string", "loads", "LexerError", "EmptyError", "DIGITS", "helper", "Lexer"} <= set(
        scope.names
    )
    assert {"WHITESPACE", "number", "done", "__init__"} <= set(scope.names)


def test_a_module_functions_scope_in_a_real_module_shows_no_class_body():
    scope = scope_of("textwrap.py", TEXTWRAP, "dedent")
    lines = scope.text.splitlines()
    assert lines[0] == "Imports: import re"
    functions = next(line for line in lines if line.startswith("Functions: "))
    assert "wrap(text, width=70, **kwargs); fill(" in functions and "dedent(" not in functions
    assert "Classes: TextWrapper" in lines
    assert "_munge_whitespace" not in scope.text  # no method of TextWrapper
    assert {"re", "wrap", "fill", "shorten", "indent", "dedent", "TextWrapper"} <= set(scope.names)


def test_a_real_methods_scope_lists_what_init_sets_and_its_siblings():
    scope = scope_of("textwrap.py", TEXTWRAP, "TextWrapper._split")
    lines = scope.text.splitlines()
    init = next(line for line in lines if line.startswith("Set on self in TextWrapper.__init__: "))
    assert "self.width; " in init and "self.break_long_words; " in init
    methods = next(line for line in lines if line.startswith("Other methods of TextWrapper: "))
    assert "; _wrap_chunks(self, chunks); " in methods and "_split(self" not in methods
    assert "_split_chunks(self, text)" in methods


@pytest.mark.parametrize("max_lines, max_chars", [(3, 10_000), (100, 300)])
def test_the_scope_is_cut_at_its_cap_most_relevant_first(max_lines, max_chars):
    whole = scope_of("textwrap.py", TEXTWRAP, "TextWrapper._split")
    cut = scope_of(
        "textwrap.py", TEXTWRAP, "TextWrapper._split", max_lines=max_lines, max_chars=max_chars
    )
    lines = cut.text.splitlines()
    assert len(lines) <= max_lines and len(cut.text) <= max_chars
    assert lines[0] == "Imports: import re"  # the imports come first and stay
    assert re.fullmatch(r"\(\d+ more names left out\)", lines[-1])
    shown = sum(line.count("; ") + 1 for line in lines[:-1])
    assert shown + int(lines[-1][1:].split()[0]) == sum(
        line.count("; ") + 1 for line in whole.text.splitlines()
    )
    assert cut.names == whole.names  # the merge knows every name, shown or cut


def test_a_signatures_trailing_comment_is_no_part_of_it():
    [d] = localise.definitions("a.py", "def f(a, b):  # a comment\n    return a\n")
    assert d.signature == "def f(a, b)"


def scoped_files():
    return {"_function/Lexer.quoted.py": "# pkg/lexer.py, in class Lexer\n" + QUOTED}


def test_a_reply_restating_the_scope_gives_back_the_function_alone():
    """Adversarial: the reply repeats the imports, a constant, a module function's stub that
    the fix calls, and the class with its sibling methods' stubs around the fixed method."""
    names = scope_of("pkg/lexer.py", LEXER, "Lexer.quoted").names
    files = scoped_files()
    reply = (
        "```python\nimport string\nfrom json import loads\n"
        "from pkg.errors import LexerError, EmptyError\n\nDIGITS = set()\n\n"
        "def helper(text): ...\n\n"
        "class Lexer(object):\n    WHITESPACE = set()\n\n"
        "    def __init__(self, text): ...\n\n"
        "    def quoted(self):\n" + textwrap.indent(FIXED_BODY, "    ") + "\n"
        "    def number(self): ...\n```"
    )
    candidate = extract_candidate(reply, files, files, "_function/Lexer.quoted.py", in_scope=names)
    assert candidate.files == {
        "_function/Lexer.quoted.py": "# pkg/lexer.py, in class Lexer\ndef quoted(self):\n"
        + FIXED_BODY
    }
    # Without the names, the same reply pastes the context in and leaves the method unfixed.
    unscoped = extract_candidate(reply, files, files, "_function/Lexer.quoted.py")
    assert "class Lexer" in unscoped.files["_function/Lexer.quoted.py"]


def test_a_reply_that_only_restates_the_scope_is_no_candidate():
    names = scope_of("pkg/lexer.py", LEXER, "Lexer.quoted").names
    files = scoped_files()
    reply = "```python\nfrom pkg.errors import LexerError\n\ndef helper(text): ...\n```"
    with pytest.raises(ExtractionError):
        extract_candidate(reply, files, files, "_function/Lexer.quoted.py", in_scope=names)


def test_a_new_helper_or_import_outside_the_scope_still_comes_through():
    names = scope_of("pkg/lexer.py", LEXER, "Lexer.quoted").names
    files = scoped_files()
    reply = (
        "```python\nimport re\n\ndef quoted(self):\n"
        + FIXED_BODY.replace("raise LexerError(message)", "raise LexerError(clean(message))")
        + "\n\ndef clean(text):\n    return re.sub(' +', ' ', text)\n```"
    )
    code = extract_candidate(reply, files, files, "_function/Lexer.quoted.py", in_scope=names)
    merged = code.files["_function/Lexer.quoted.py"]
    assert "import re" in merged and "def clean(text):" in merged


def lexer_bug() -> output.Bug:
    buggy = LEXER.replace("        raise LexerError(message)\n", "")
    fixed = LEXER.replace(
        "            message = str(error)\n",
        "            message = str(error)\n            raise LexerError(message)\n",
    )
    start = fixed.index("def quoted")
    return output.Bug(
        instance_id="pypi__lexer-1.0.drop_statement__00000000",
        source="pypi/lexer-1.0",
        path="pkg/lexer.py",
        function="Lexer.quoted",
        def_line=fixed[:start].count("\n") + 1,
        indent="    ",
        family="drop_statement",
        note="dropped `raise LexerError(message)`",
        mutation_key="k",
        span=(0, 0),
        replacement="",
        original_function=fixed[start:].split("\n\n")[0] + "\n",
        buggy_function=buggy[start:].split("\n\n")[0] + "\n",
        fail_to_pass=["tests/test_lexer.py::test_bad"],
        pass_to_pass=[],
        failures=[],
        problem_statement="1 test of pypi/lexer-1.0 fails.",
    ), buggy


def test_a_synth_function_task_shows_its_scope_and_an_older_one_still_loads(tmp_path):
    bug, buggy = lexer_bug()
    mirror = output.Mirror(tmp_path / "repos" / "pypi__lexer-1.0")
    commit = mirror.commit(
        {"pkg/lexer.py": buggy.encode(), "tests/test_lexer.py": b"def test_bad():\n    pass\n"},
        "base",
        "main",
    )
    task = output.function_task(bug, "repos/pypi__lexer-1.0", commit, commit, 60.0, buggy.encode())
    scope = scope_of("pkg/lexer.py", buggy, "Lexer.quoted")
    assert task.spec == (
        "1 test of pypi/lexer-1.0 fails.\n\n" + describe(scope, "Lexer.quoted", "pkg/lexer.py")
    )
    assert "from pkg.errors import LexerError, EmptyError" in task.spec
    assert "Reply with the fixed function only" in task.spec
    assert task.metadata["in_scope"] == list(scope.names)
    assert task.files[task.entry_file].startswith("# pkg/lexer.py, in class Lexer\ndef quoted")

    # A task written before the scope was shown: it loads as it is, and `scoped` gives it
    # exactly what a new one has.
    older = task.model_copy(
        update={
            "spec": bug.problem_statement,
            "metadata": {k: v for k, v in task.metadata.items() if k != "in_scope"},
        }
    )
    data = tmp_path / "functions.jsonl"
    data.write_text(json.dumps(json.loads(older.model_dump_json())) + "\n")
    [loaded] = load_synth(data)
    assert loaded.spec == bug.problem_statement and "in_scope" not in loaded.metadata
    again = output.scoped(loaded, buggy)
    assert (again.spec, again.metadata["in_scope"]) == (task.spec, task.metadata["in_scope"])
