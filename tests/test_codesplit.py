"""Train and eval split by code: units on one side, twins in disguise caught by fingerprint."""

from __future__ import annotations

import pytest

from selfrepair.codesplit import fingerprint, function_of, split_by_code
from selfrepair.errors import SelfRepairError
from selfrepair.types import Task, TestSpec


def task(task_id: str, package: str, function: str, solution: str, buggy: str) -> Task:
    return Task(
        task_id=task_id,
        spec="Fix it.",
        files={f"{function}.py": buggy},
        entry_file=f"{function}.py",
        entry_point=function,
        tests=TestSpec(kind="script", files={"test.py": "assert True\n"}),
        metadata={"package": package, "function": function, "solution": solution},
    )


ADD = "def add(a, b):\n    '''Return a + b.'''\n    return a + b + 1\n"
# The same function under other names, another constant, another docstring and layout.
PLUS = "def plus(x, y):\n    # the sum\n    return (x + y) + 7\n"
SUB = "def sub(a, b):\n    return a - b + 1\n"


def test_the_fingerprint_abstracts_names_constants_and_docstrings_but_not_operators():
    assert fingerprint(ADD) == fingerprint(PLUS)
    assert fingerprint(ADD) != fingerprint(SUB)
    assert fingerprint("def f(s):\n    return s + 'a'\n") != fingerprint(ADD.replace("1", "'a'"))
    # a name used twice is not a name used once: the renaming keeps who is who
    assert fingerprint("def f(a, b):\n    return a * a\n") != fingerprint(
        "def f(a, b):\n    return a * b\n"
    )


def test_a_renamed_identifier_twin_is_kept_on_the_train_side_only():
    tasks = [
        task("p1/add-0", "p1", "add", ADD, ADD.replace("+ b", "- b")),
        task("p1/add-1", "p1", "add", ADD, ADD.replace("+ 1", "- 1")),
        task("p2/plus-0", "p2", "plus", PLUS, PLUS.replace("+ y", "* y")),
        task("p2/sub-0", "p2", "sub", SUB, SUB.replace("- b", "+ b")),
    ]
    split = split_by_code(tasks, eval_packages=("p2",))
    assert [t.task_id for t in split.train] == ["p1/add-0", "p1/add-1"]
    assert [t.task_id for t in split.eval] == ["p2/sub-0"]
    assert [t.task_id for t in split.twins] == ["p2/plus-0"]
    report = split.report()
    assert report["by"] == "package"
    assert report["twins_removed"] == 1 and report["twin_functions_removed"] == 1
    assert report["train_functions"] == 1 and report["eval_functions"] == 1


def test_one_package_is_split_by_module_and_no_function_lands_on_both_sides():
    tasks = [
        task(f"ops/f{n}-{bug}", "ops", f"f{n}", f"def f{n}(a):\n    return a{' + a' * n}\n", "x")
        for n in range(1, 11)
        for bug in range(2)
    ]
    for seed in range(5):
        split = split_by_code(tasks, eval_fraction=0.3, seed=seed)
        assert split.by == "module"
        train = {function_of(t) for t in split.train}
        held = {function_of(t) for t in split.eval + split.twins}
        assert train and held and not train & held
        assert len(split.eval) + len(split.twins) <= 0.3 * len(tasks)
        assert not split.twins  # ten different functions: no twins
    assert len({tuple(t.task_id for t in split_by_code(tasks, seed=s).eval) for s in range(5)}) > 1


def test_one_unit_cannot_be_split():
    tasks = [task("p/add-0", "p", "add", ADD, ADD), task("p/add-1", "p", "add", ADD, ADD)]
    with pytest.raises(SelfRepairError, match="nothing to hold out"):
        split_by_code(tasks)
