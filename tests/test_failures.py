"""Each reply's failure kind, and the counts of a real (scripted model) run directory."""

from __future__ import annotations

from selfrepair.training.failures import KINDS, failure_kind, failure_kinds

from selfrepair.store import TrajectoryStore
from selfrepair.types import Candidate, Step, Task, TestCase, TestReport, TestSpec

BUGGY = "def f(a, b):\n    return a - b\n"
TASK = Task(
    task_id="add",
    spec="Return a + b.",
    files={"add.py": BUGGY},
    entry_file="add.py",
    tests=TestSpec(kind="script", files={"test_add.py": "assert f(1, 2) == 3\n"}),
)
FAILED = TestReport(tests=[TestCase(name="t", outcome="failed")], exit_code=1)
PASSED = TestReport(tests=[TestCase(name="t", outcome="passed")], exit_code=0)


def step(code: str | None, report: TestReport | None = FAILED, finish: str = "stop") -> Step:
    candidate = Candidate(files={"add.py": code}) if code is not None else None
    return Step(
        index=0,
        kind="sample",
        completion="```python\n" + (code or "") + "\n```",
        finish_reason=finish,
        candidate=candidate,
        report=report if candidate else None,
    )


def test_each_reply_gets_the_first_kind_that_applies():
    fixed = "def f(a, b):\n    return a + b\n"
    assert failure_kind(step(fixed, PASSED), TASK) == "pass"
    assert failure_kind(step(fixed, PASSED, finish="length"), TASK) == "pass"  # it passed
    assert failure_kind(step("def f(a, b):\n    return a", finish="length"), TASK) == "cut off"
    assert failure_kind(step(None), TASK) == "no code"
    echoed = step(None).model_copy(
        update={"error": "the reply's code is the same as the code it was asked to fix"}
    )
    assert failure_kind(echoed, TASK) == "unchanged"
    # the same code, laid out otherwise and commented, is unchanged
    assert failure_kind(step("def f(a,b):  # add\n  return (a - b)\n"), TASK) == "unchanged"
    assert failure_kind(step("def f(a, b):\n    return a +\n"), TASK) == "does not compile"
    assert failure_kind(step("def f(a, b):\n    return a * b\n"), TASK) == "wrong"


def test_a_run_directory_is_counted_by_kind(scripted_run):
    counts = failure_kinds(scripted_run)
    with TrajectoryStore(scripted_run, read_only=True) as store:
        steps = [s for t in store.trajectories() for s in t.steps if s.kind != "localise"]
    assert set(counts["kinds"]) == set(KINDS)
    assert counts["replies"] == len(steps) == sum(counts["kinds"].values())
    assert counts["kinds"]["pass"] == sum(s.report is not None and s.report.passed for s in steps)
    assert counts["kinds"]["wrong"] > 0 and counts["cut_off_rate"] == 0
