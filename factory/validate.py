"""Validation in the sandbox: which tests a source's original code passes, which functions
each test runs, and whether a mutant is a bug the tests see.

The baseline runs the whole suite twice on the original code. The first run records, per
test, the functions of the package it called (the plugin in harness/synth_plugin.py); a test
that does not pass in both runs (failed, errored, skipped, or flipped between them) is left
out. A mutant of function f is then run against the tests that call f, passed twice, and
pass on the original when run by themselves (checked once per function):

  FAIL_TO_PASS  those that now fail or error (a test that hits the per-test time limit fails
                like any other)
  PASS_TO_PASS  those that still pass

It is a bug when FAIL_TO_PASS is not empty; a test skipped under the mutant disqualifies it
(it neither fails nor passes). When the whole run is killed (a loop in C code that no alarm
interrupts, or memory beyond the container's limit) only a single selected test can be blamed; with more, the mutant is dropped.
Tests that do not call f cannot see it, so they are not run: this is what makes a mutant
cost one short pytest run instead of the package's suite.
"""

from __future__ import annotations

import bisect
import dataclasses
import json
import re
import shlex
import time
from dataclasses import dataclass, field
from importlib import resources
from typing import Literal

from selfrepair.factory.mutations import Function
from selfrepair.sandbox.core import Limits, Sandbox
from selfrepair.sandbox.testing import run_tests

from selfrepair.errors import SelfRepairError
from selfrepair.types import TASK_ID_CHARS, Candidate, Task, TestReport, TestSpec

PLUGIN = "_selfrepair_synth_plugin.py"
PLUGIN_MODULE = PLUGIN.removesuffix(".py")
SPLICE = "_selfrepair_splice.py"
CALLS = "calls.json"
BASELINE_TIMEOUT_S = 1200.0
MIN_TEST_SECONDS = 2.0  # the shortest per-test alarm; fast tests get 10x their baseline time
FAILURE_CHARS = 3000  # a failing test's traceback is kept up to this, for the problem statement


def harness(name: str) -> str:
    """The text of a file of the harness folder, as shipped with the package."""
    return resources.files("selfrepair.factory.harness").joinpath(name).read_text(encoding="utf-8")


def plugin_files() -> dict[str, str]:
    return {PLUGIN: harness("synth_plugin.py")}


@dataclass
class Baseline:
    """What the original code's suite did, twice."""

    stable: list[str]  # passed in both runs: the tests a mutant is judged by
    left_out: dict[str, str]  # test id -> why it is not used
    seconds: dict[str, float]  # test id -> its time in the second run
    calls: dict[str, list[tuple[str, int]]]  # test id -> (file, first line) of code it ran
    wall_seconds: float = 0.0

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> Baseline:
        data = dict(data)
        data["calls"] = {
            test: [tuple(pair) for pair in pairs] for test, pairs in data["calls"].items()
        }
        return cls(**data)

    def tests_of(self, functions: list[Function]) -> dict[tuple[str, str], list[str]]:
        """For each function (path, qualname), the stable tests that called it."""
        by_file: dict[str, list[Function]] = {}
        for function in functions:
            by_file.setdefault(function.path, []).append(function)
        for units in by_file.values():
            units.sort(key=lambda f: f.start_line)
        starts = {path: [f.start_line for f in units] for path, units in by_file.items()}
        selected: dict[tuple[str, str], list[str]] = {}
        for test in self.stable:
            hit = set()
            for path, line in self.calls.get(test, []):
                units = by_file.get(path)
                if not units:
                    continue
                index = bisect.bisect_right(starts[path], line) - 1
                if index >= 0 and units[index].contains_line(line):
                    hit.add((path, units[index].qualname))
            for key in hit:
                selected.setdefault(key, []).append(test)
        return selected


def pytest_line(args: list[str], env: dict[str, str]) -> str:
    """A shell line that runs pytest with the plugin (found on PYTHONPATH from the tests dir)."""
    exports = " ".join(f"{name}={value}" for name, value in env.items())
    return (
        f'export PYTHONPATH="$SELFREPAIR_TESTS:$PYTHONPATH" {exports}\n'
        f"python -m pytest -q -p no:cacheprovider -p {PLUGIN_MODULE} "
        + " ".join(shlex.quote(a) for a in args)
    )


def run_baseline(
    sandbox: Sandbox, files: dict[str, str], name: str, timeout_s: float = BASELINE_TIMEOUT_S
) -> Baseline:
    """Run the suite twice on the original code; refuse a source none of whose tests pass."""
    started = time.monotonic()
    limits = dataclasses.replace(
        getattr(sandbox, "limits", None) or Limits(), wall_seconds=timeout_s
    )
    first = sandbox.execute(
        files,
        ["sh", "-c", pytest_line([], {"SELFREPAIR_SYNTH_CALLS": f"$SELFREPAIR_OUT/{CALLS}"})],
        tests=plugin_files(),
        limits=limits,
        collect=[CALLS],
    )
    if first.timed_out:
        raise SelfRepairError(
            f"{name}: the test suite ran longer than {timeout_s:g} s on the original code"
        )
    try:
        recorded = json.loads(first.artifacts[CALLS])
    except (KeyError, ValueError):
        tail = (first.stderr or first.stdout).strip().splitlines()[-3:]
        raise SelfRepairError(
            f"{name}: pytest did not finish on the original code: {' | '.join(tail) or 'no output'}"
        ) from None
    second = run_tests(sandbox, baseline_task(files, name, timeout_s))
    outcomes_first: dict[str, str] = {t: o for t, o in recorded["outcomes"].items() if "::" in t}
    # JUnit's entries that are no test: the run itself, pytest's internal errors
    outcomes_second = {
        c.name: c.outcome for c in second.tests if "::" in c.name and c.name != "pytest::internal"
    }
    stable, left_out = [], {}
    for test in sorted(set(outcomes_first) | set(outcomes_second)):
        one, two = outcomes_first.get(test), outcomes_second.get(test)
        if one == two == "passed":
            stable.append(test)
        elif one is None or two is None:
            left_out[test] = "not seen in both runs"
        elif one != two:
            left_out[test] = f"flipped: {one}, then {two}"
        else:
            left_out[test] = one
    if not stable:
        failing = [case for case in second.tests if case.outcome in ("failed", "error")]
        why = (
            (failing[0].name + ": " + (failing[0].message or "").splitlines()[0][:200])
            if failing and failing[0].message
            else (second.reason or "no tests ran")
        )
        raise SelfRepairError(f"{name}: no test passes on the original code ({why})")
    return Baseline(
        stable=stable,
        left_out=left_out,
        seconds={case.name: case.seconds for case in second.tests if case.name in set(stable)},
        calls={
            test: [tuple(pair) for pair in pairs]
            for test, pairs in recorded["calls"].items()
            if test in set(stable)
        },
        wall_seconds=time.monotonic() - started,
    )


def run_id(name: str) -> str:
    """A task id for one of the factory's own runs of `name` (a path, a requirement, a
    `repo:function`): task ids are plain names, so what separates folders is flattened."""
    flat = re.sub(r"[^A-Za-z0-9_.:@+=-]+", "_", name).strip("._")
    return flat[-(TASK_ID_CHARS - len("/baseline")) :] or "source"


def baseline_task(files: dict[str, str], name: str, timeout_s: float) -> Task:
    command = pytest_line([], {})
    return Task(
        task_id=f"{run_id(name)}/baseline",
        spec="",
        files=files,
        tests=TestSpec(kind="command", command=command, files=plugin_files(), timeout_s=timeout_s),
    )


Status = Literal["bug", "survived", "skipped", "killed"]


@dataclass
class Verdict:
    status: Status
    fail_to_pass: list[str] = field(default_factory=list)
    pass_to_pass: list[str] = field(default_factory=list)
    failures: list[dict] = field(default_factory=list)  # name, message, traceback of failing tests
    seconds: float = 0.0
    reason: str = ""

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


def limits_for(baseline: Baseline, tests: list[str]) -> tuple[float, float]:
    """(per-test alarm, whole-run wall limit) in seconds, from the tests' baseline times."""
    times = [baseline.seconds.get(test, 0.0) for test in tests]
    per_test = max(MIN_TEST_SECONDS, 10 * max(times, default=0.0))
    return per_test, min(600.0, 30 + 5 * sum(times) + per_test)


def selection_task(files: dict[str, str], baseline: Baseline, tests: list[str], name: str) -> Task:
    """The validation run of `tests` by their ids, with the per-test alarm and a wall limit."""
    per_test, wall = limits_for(baseline, tests)
    command = pytest_line(tests, {"SELFREPAIR_SYNTH_TEST_SECONDS": f"{per_test:g}"})
    return Task(
        task_id=run_id(name),
        spec="",
        files=files,
        tests=TestSpec(kind="command", command=command, files=plugin_files(), timeout_s=wall),
    )


def passing_alone(
    sandbox: Sandbox, files: dict[str, str], baseline: Baseline, tests: list[str], name: str
) -> list[str]:
    """Those of `tests` that pass on the original code when run as a selection of their own:
    a test may pass in the whole suite and not without the tests before it, and an id pytest
    cannot select would look like a failure under every mutant. Only these judge a mutant."""
    report = run_tests(sandbox, selection_task(files, baseline, tests, name))
    passed = {case.name for case in report.tests if case.outcome == "passed"}
    return [test for test in tests if test in passed]


def run_mutant(
    sandbox: Sandbox,
    files: dict[str, str],
    baseline: Baseline,
    tests: list[str],
    path: str,
    mutated: str,
    name: str,
) -> Verdict:
    """Run `tests` with the file at `path` replaced by `mutated`, and judge the mutant."""
    report = run_tests(
        sandbox, selection_task(files, baseline, tests, name), Candidate(files={path: mutated})
    )
    return judge(report, tests)


def judge(report: TestReport, tests: list[str]) -> Verdict:
    if report.timed_out or report.out_of_memory:
        if len(tests) == 1:
            return Verdict(
                "bug",
                fail_to_pass=list(tests),
                failures=[{"name": tests[0], "message": report.reason, "traceback": ""}],
                seconds=report.wall_seconds,
                reason=report.reason,
            )
        return Verdict("killed", seconds=report.wall_seconds, reason=report.reason)
    cases = {case.name: case for case in report.tests}
    failing, passing, skipped = [], [], []
    for test in tests:
        case = cases.get(test)
        outcome = case.outcome if case is not None else "missing"
        (skipped if outcome == "skipped" else passing if outcome == "passed" else failing).append(
            test
        )
    if skipped:
        return Verdict(
            "skipped",
            seconds=report.wall_seconds,
            reason=f"{len(skipped)} test(s) skipped under the mutant",
        )
    if not failing:
        return Verdict("survived", pass_to_pass=passing, seconds=report.wall_seconds)
    failures = []
    for test in failing[:5]:
        case = cases.get(test)
        if case is None:
            run = next((c for c in report.tests if c.outcome in ("failed", "error")), None)
            message = (run.message if run else "") or report.reason or "the test did not run"
            failures.append(
                {
                    "name": test,
                    "message": message[:500],
                    "traceback": (run.traceback if run else "")[-FAILURE_CHARS:],
                }
            )
        else:
            failures.append(
                {
                    "name": test,
                    "message": case.message[:500],
                    "traceback": case.traceback[-FAILURE_CHARS:],
                }
            )
    return Verdict(
        "bug",
        fail_to_pass=failing,
        pass_to_pass=passing,
        failures=failures,
        seconds=report.wall_seconds,
    )
