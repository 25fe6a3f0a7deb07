"""From a crash site back to the fault: the functions that should have set what the crash
found missing, or made what it read, rank above the crash site. Real pytest runs (the local
sandbox) give the tracebacks; small repositories as fixtures."""

from __future__ import annotations

from pathlib import Path

import git
from selfrepair.agents.code import crash, localise
from selfrepair.agents.code.repo import checkout, open_repository
from selfrepair.agents.code.suspects import suspects
from selfrepair.graphs.issue import run_candidate_tests
from selfrepair.sandbox.local import LocalSandbox

from selfrepair import types

# `Result.__init__` drops `self.named = named`: every test crashes in `__getitem__`.
RESULTS = '''"""Parse results."""


class Result:
    def __init__(self, fixed, named):
        self.fixed = fixed

    def __getitem__(self, item):
        if isinstance(item, int):
            return self.fixed[item]
        return self.named[item]


def parse(text):
    words = text.split()
    return Result(words, {w: i for i, w in enumerate(words)})


def render(result):
    return " ".join(result.fixed)
'''
RESULT_TESTS = """from results import parse


def test_named():
    assert parse("a b")["b"] == 1


def test_named_first():
    assert parse("x y")["x"] == 0


def test_fixed():
    assert parse("a b")[0] == "a"
"""


def make_repo(root: Path, files: dict[str, str]) -> Path:
    for relative, text in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(text)
    return root


def failing_tests(root: Path) -> list[types.TestCase]:
    """The failing tests of the repository at `root`, as the sandbox reports them."""
    repo = git.Repo.init(root, initial_branch="main")
    repo.git.add("--all")
    actor = git.Actor("Test", "test@example.com")
    repo.index.commit("base", author=actor, committer=actor)
    task = types.Task(
        task_id="crash",
        spec="x",
        repo=str(root),
        tests=types.TestSpec(kind="command", command="python -m pytest -q", timeout_s=60),
    )
    with checkout(open_repository(root)) as work:
        return run_candidate_tests(LocalSandbox(), work, task, None).failing


def test_a_missing_attribute_points_at_the_constructor_that_never_set_it(tmp_path):
    """The crash is in Result.__getitem__ (its frame ranks first without the crash's leads);
    the fault, Result.__init__, ranks first with them."""
    root = make_repo(tmp_path / "repo", {"results.py": RESULTS, "tests/test_r.py": RESULT_TESTS})
    failing = failing_tests(root)
    assert len(failing) == 2 and "has no attribute 'named'" in failing[0].message
    issue = "Looking a result up by name fails."
    defs = localise.repository_map(root)
    frames_only = [
        r.definition.qualname
        for r in localise.rank(defs, "\n".join(c.traceback for c in failing))
        if r.definition.kind != "class" and not r.definition.path.startswith("tests/")
    ]
    assert frames_only[0] == "Result.__getitem__"

    ranked = suspects(root, issue, failing)
    assert ranked[0].definition.qualname == "Result.__init__"
    assert any("builds the Result that has no .named" in r for r in ranked[0].reasons)
    assert ranked[1].definition.qualname == "Result.__getitem__"


def test_a_missing_key_points_at_the_function_that_stores_it(tmp_path):
    root = make_repo(
        tmp_path,
        {
            "conf.py": (
                "def defaults():\n    return {'port': 80}\n\n\n"
                "def load(text):\n    conf = defaults()\n    conf['hostname'] = text\n"
                "    return conf\n\n\n"
                "def url(conf):\n    return conf['host'] + ':' + str(conf['port'])\n"
            )
        },
    )
    case = types.TestCase(
        name="tests/test_conf.py::test_url",
        outcome="failed",
        message="KeyError: 'host'",
        traceback="conf.py:12: in url\n    return conf['host']\nE   KeyError: 'host'",
    )
    defs = localise.repository_map(root)
    found = {lead.definition.qualname: lead for lead in crash.leads(root, defs, case)}
    assert "load" not in found  # it stores 'hostname', not 'host'
    case = case.model_copy(update={"message": "KeyError: 'port'"})
    found = {lead.definition.qualname: lead for lead in crash.leads(root, defs, case)}
    assert found["defaults"].kind == "missing" and "stores key 'port'" in found["defaults"].reason


def test_a_bad_value_points_at_what_the_crash_statement_read_and_called(tmp_path):
    """A TypeError where a value is used: the writer of the attribute the statement reads,
    and the function it calls, are leads; a function that only shares a name is not."""
    root = make_repo(
        tmp_path,
        {
            "clock.py": (
                "class Clock:\n"
                "    def __init__(self, minutes):\n        self.offset = str(minutes)\n\n"
                "    def shift(self, at):\n        return at + self.offset + scale(at)\n\n\n"
                "def scale(at):\n    return at\n\n\n"
                "def offset_help():\n    return 'offset'\n"
            )
        },
    )
    case = types.TestCase(
        name="tests/test_clock.py::test_shift",
        outcome="failed",
        message="TypeError: unsupported operand type(s) for +: 'int' and 'str'",
        traceback=(
            "tests/test_clock.py:4: in test_shift\n    assert Clock(5).shift(1) == 6\n"
            "clock.py:6: in shift\n    return at + self.offset + scale(at)\nE   TypeError"
        ),
    )
    defs = localise.repository_map(root)
    found = {lead.definition.qualname: lead.kind for lead in crash.leads(root, defs, case)}
    assert found == {"Clock.__init__": "produced", "scale": "produced"}


def test_a_name_error_points_nowhere_else_than_where_it_crashed(tmp_path):
    """A local name is set only in the function that crashed: another function that assigns
    the same name is no lead."""
    root = make_repo(
        tmp_path,
        {
            "grammar.py": (
                "def star(left):\n    right = parse_rhs()\n    return (left, right)\n\n\n"
                "def flatten(left):\n    return (left, right)\n\n\n"
                "def parse_rhs():\n    return 1\n"
            )
        },
    )
    case = types.TestCase(
        name="tests/test_grammar.py::test_flatten",
        outcome="failed",
        message="NameError: name 'right' is not defined",
        traceback="grammar.py:7: in flatten\n    return (left, right)\nE   NameError",
    )
    assert crash.leads(root, localise.repository_map(root), case) == []
