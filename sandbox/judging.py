"""A TestReport judged against what the task expects of it: the tests that ran on the code as
given (its baseline), and the tests the task names. The one place where a report is read
against another; the graphs and the CLI call these functions and re-derive nothing.

Skipped is not passed: a test that ran (passed, failed or errored) on the code as given and
is skipped, deselected or missing after the candidate is a failure, and the run is
suspicious (a candidate that cannot pass a test may try to make it not run). A test skipped
on the code as given too is left out of the report: it is nobody's evidence.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence

from selfrepair.paths import diff_paths
from selfrepair.types import Task, TestCase, TestReport

RAN = ("passed", "failed", "error")


def same_test(reported: str, named: str) -> bool:
    """pytest ids match exactly or by a path suffix (a report's path may be relative to
    another root than the task's list)."""
    return reported == named or reported.endswith("/" + named) or named.endswith("/" + reported)


def ran_tests(baseline: TestReport | None) -> list[str]:
    """The tests that ran on the code as given (passed or not): every later run must run them."""
    if baseline is None:
        return []
    return [
        case.name
        for case in baseline.tests
        if case.outcome in RAN and not case.name.startswith("<")
    ]


def against_baseline(report: TestReport, expect: Sequence[str]) -> TestReport:
    """`report` with each expected test that was skipped or did not run turned into an error
    (and the run marked suspicious), and the tests skipped on both sides left out. Without
    `expect` (no baseline) the report stands as it is: a skipped test is then simply not a
    pass."""
    if not expect:
        return report
    cases: list[TestCase] = []
    lost: list[str] = []
    for case in report.tests:
        if case.outcome != "skipped":
            cases.append(case)
        elif any(same_test(case.name, name) for name in expect):
            lost.append(case.name)
            cases.append(
                case.model_copy(
                    update={
                        "outcome": "error",
                        "message": "skipped, though it ran on the code as given"
                        + (f" ({case.message})" if case.message else ""),
                    }
                )
            )
    reported = [case.name for case in report.tests]
    for name in expect:
        if not any(same_test(seen, name) for seen in reported):
            lost.append(name)
            cases.append(
                TestCase(
                    name=name, outcome="error", message="it ran on the code as given, not here"
                )
            )
    if not lost:
        return report.model_copy(update={"tests": cases})
    what = (
        f"{len(lost)} test(s) that ran on the code as given were skipped or did not run: "
        + ", ".join(lost[:5])
        + (", ..." if len(lost) > 5 else "")
    )
    suspicious = "; ".join(part for part in (report.suspicious, what) if part)
    return report.model_copy(
        update={"tests": cases, "reason": report.reason or what, "suspicious": suspicious}
    )


def required(task: Task, report: TestReport) -> TestReport:
    """The report as the task's contract reads it. Where the task names tests (those that must
    start passing, `select`, and those that must keep passing), only they count, each one that
    did not run or was skipped as a failure: the suite may hold tests that failed at the base
    already, so the command's exit status alone would judge the wrong thing. Otherwise the
    whole run counts."""
    named = [*task.tests.select, *task.tests.must_keep_passing]
    if not named:
        return report
    cases = []
    for name in dict.fromkeys(named):
        found = next((c for c in report.tests if same_test(c.name, name)), None)
        if found is None:
            found = TestCase(name=name, outcome="error", message="this test did not run")
        elif found.outcome == "skipped":
            found = found.model_copy(update={"outcome": "error", "message": "skipped"})
        cases.append(found)
    failing = [c for c in cases if c.outcome in ("failed", "error")]
    trouble = report.timed_out or report.out_of_memory
    if trouble:
        reason = report.reason
    elif failing:
        names = ", ".join(c.name for c in failing[:5])
        reason = f"{len(failing)} of {len(cases)} required tests failed: {names}"
    else:
        reason = report.reason if report.suspicious else ""
    exit_code = report.exit_code if trouble or failing else 0
    return report.model_copy(update={"tests": cases, "exit_code": exit_code, "reason": reason})


def workspace_tests(task: Task) -> Task:
    """A pytest spec with no test files of its own (SWE-bench's: the tests arrive with the
    test patch) runs pytest in the checkout on the files that patch touches, as SWE-bench's
    harness does; every other spec is used as it is."""
    spec = task.tests
    if spec.kind != "pytest" or spec.files:
        return task
    patch = task.metadata.get("test_patch") or ""
    files = [path for path in diff_paths(patch) if path.endswith(".py")]
    command = "python -m pytest -q -rA " + " ".join(shlex.quote(f) for f in files)
    return task.model_copy(
        update={"tests": spec.model_copy(update={"kind": "command", "command": command})}
    )
