"""run_tests on the local sandbox: script tasks with real QuixBugs entries, pytest and
command tasks, judged and guarded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from selfrepair.sandbox.local import LocalSandbox
from selfrepair.sandbox.testing import run_tests

from selfrepair.types import Candidate, Task, TestSpec

QUIXBUGS = Path(__file__).resolve().parents[2] / "shared" / "benchmarks" / "quixbugs_python.jsonl"


@pytest.fixture(scope="module")
def sandbox():
    box = LocalSandbox()
    yield box
    box.close()


def quixbugs(name: str) -> tuple[Task, dict]:
    if not QUIXBUGS.is_file():
        pytest.skip(f"QuixBugs data not found at {QUIXBUGS}")
    row = next(r for r in map(json.loads, QUIXBUGS.read_text().splitlines()) if r["name"] == name)
    task = Task(
        task_id=name,
        spec=row["docstring"],
        files={f"{name}.py": row["buggy_program"]},
        entry_file=f"{name}.py",
        tests=TestSpec(kind="script", files={f"test_{name}.py": row["tests"]}, timeout_s=60),
    )
    return task, row


@pytest.mark.parametrize("name", ["gcd", "breadth_first_search", "detect_cycle"])
def test_quixbugs_reference_passes_and_buggy_fails(sandbox, name):
    task, row = quixbugs(name)
    fixed = run_tests(sandbox, task, Candidate(files={f"{name}.py": row["solution"]}))
    assert fixed.passed, fixed.reason + fixed.stderr
    assert [case.name for case in fixed.tests] == [name]
    buggy = run_tests(sandbox, task)
    assert not buggy.passed
    assert buggy.reason and buggy.tests[0].outcome in ("failed", "error")


def test_quixbugs_endless_buggy_program_times_out(sandbox):
    task, _ = quixbugs("bitcount")
    report = run_tests(
        sandbox, task.model_copy(update={"tests": task.tests.model_copy(update={"timeout_s": 1})})
    )
    assert report.timed_out and not report.passed
    assert "timed out" in report.reason


def test_failing_assertion_is_failed_with_traceback(sandbox):
    task, _ = quixbugs("gcd")
    report = run_tests(sandbox, task, Candidate(files={"gcd.py": "def gcd(a, b):\n    return 1\n"}))
    assert report.tests[0].outcome == "failed"
    assert "AssertionError" in report.tests[0].traceback


def pytest_task(tests: dict[str, str], select: list[str] | None = None) -> Task:
    return Task(
        task_id="calc",
        spec="add two numbers",
        files={"calc.py": "def add(a, b):\n    return a - b\n"},
        tests=TestSpec(kind="pytest", files=tests, select=select or []),
    )


TESTS = {
    "test_calc.py": (
        "from calc import add\n\n"
        "def test_add():\n    assert add(1, 2) == 3\n\n"
        "def test_zero():\n    assert add(0, 0) == 0\n\n"
        "class TestMore:\n    def test_neg(self):\n        assert add(-1, -1) == -2\n"
    )
}


def test_pytest_task_itemises_tests_with_tracebacks(sandbox):
    report = run_tests(sandbox, pytest_task(TESTS))
    outcomes = {case.name: case.outcome for case in report.tests}
    assert outcomes == {
        "test_calc.py::test_add": "failed",
        "test_calc.py::test_zero": "passed",
        "test_calc.py::TestMore::test_neg": "failed",
    }
    assert "assert -1 == 3" in report.tests[0].traceback
    assert report.reason.startswith("2 of 3 tests failed")
    fixed = run_tests(
        sandbox,
        pytest_task(TESTS),
        Candidate(files={"calc.py": "def add(a, b):\n    return a + b\n"}),
    )
    assert fixed.passed and fixed.fraction_passed == 1.0


def test_pytest_select_narrows_to_test_ids(sandbox):
    report = run_tests(sandbox, pytest_task(TESTS, select=["test_calc.py::test_zero"]))
    assert [case.name for case in report.tests] == ["test_calc.py::test_zero"]
    assert report.passed


def test_candidate_copy_of_tests_is_not_what_runs(sandbox):
    cheat = "def test_add():\n    pass\n"
    report = run_tests(sandbox, pytest_task(TESTS), Candidate(files={"test_calc.py": cheat}))
    assert not report.passed


def test_command_task_with_pytest_is_itemised(sandbox):
    task = Task(
        task_id="cmd",
        spec="",
        files={
            "calc.py": "def add(a, b):\n    return a - b\n",
            "tests/test_calc.py": "def test_x():\n    pass\n",
        },
        tests=TestSpec(
            kind="command",
            command="python -m pytest -q tests",
            files={"tests/test_calc.py": TESTS["test_calc.py"]},
        ),
    )
    report = run_tests(sandbox, task)
    assert {case.name for case in report.tests} >= {"tests/test_calc.py::test_add"}
    assert not report.passed


def test_bare_pytest_command_runs_the_tests(sandbox):
    task = Task(
        task_id="cmd",
        spec="",
        files={"calc.py": "def add(a, b):\n    return a - b\n"},
        tests=TestSpec(
            kind="command", command="pytest -q", files={"test_calc.py": TESTS["test_calc.py"]}
        ),
    )
    report = run_tests(sandbox, task)
    assert "test_calc.py::test_add" in {case.name for case in report.tests}, report.reason
    assert not report.passed
    assert run_tests(
        sandbox, task, Candidate(files={"calc.py": "def add(a, b):\n    return a + b\n"})
    ).passed


def test_command_task_without_pytest_uses_exit_status(sandbox):
    task = Task(
        task_id="cmd",
        spec="",
        files={"a.txt": "x"},
        tests=TestSpec(kind="command", command="grep -q y a.txt"),
    )
    report = run_tests(sandbox, task)
    assert not report.passed and "exited with status 1" in report.reason
    assert run_tests(sandbox, task, Candidate(files={"a.txt": "y"})).passed


def test_candidate_with_escaping_path_is_refused(sandbox):
    task, _ = quixbugs("gcd")
    report = run_tests(sandbox, task, Candidate(files={"../evil.py": "x = 1\n"}))
    assert not report.passed and "stay inside the workspace" in report.reason


def test_candidate_diff_is_applied(sandbox):
    task = pytest_task(TESTS)
    diff = "--- a/calc.py\n+++ b/calc.py\n@@ -1,2 +1,2 @@\n def add(a, b):\n-    return a - b\n+    return a + b\n"
    assert run_tests(sandbox, task, Candidate(diff=diff)).passed


@pytest.mark.parametrize("kind", ["local", "docker"])
def test_dependency_folders_are_importable_and_read_only(kind, tmp_path, request):
    from selfrepair.sandbox.choose import open_sandbox

    deps = tmp_path / "deps"
    deps.mkdir()
    (deps / "helper_dep.py").write_text("FACTOR = 2\n")
    if kind == "docker":
        request.getfixturevalue(
            "docker_sandbox"
        )  # fails in CI, skips elsewhere, when Docker is missing
    box = open_sandbox(kind, pool_size=1, python_path=[deps])
    try:
        task = Task(
            task_id="dep",
            spec="",
            files={
                "calc.py": "from helper_dep import FACTOR\n\ndef double(x):\n    return x * FACTOR\n"
            },
            tests=TestSpec(
                kind="pytest",
                files={
                    "test_calc.py": "from calc import double\nfrom helper_dep import FACTOR\n\ndef test_double():\n    assert double(3) == 3 * FACTOR\n"
                },
            ),
        )
        assert run_tests(box, task).passed
        vandal = "import helper_dep, os\nopen(os.path.join(os.path.dirname(helper_dep.__file__), 'x'), 'w')\n"
        run = box.execute({"v.py": vandal}, ["python", "v.py"])
        assert run.exit_code != 0 and not (deps / "x").exists()
    finally:
        box.close()
