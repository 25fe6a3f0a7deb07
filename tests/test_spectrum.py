"""Spectrum-based fault localisation: the tests run once on the base with a tracer
(sandbox/spectrum.py), and what each failing test executes ranks the suspects
(agents/code/suspects.py). Real sandboxes, real git checkouts; a scripted model where the
test is about localise-repair's control flow."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from selfrepair.agents.code.suspects import suspects
from selfrepair.agents.models.scripted import ScriptedModel
from selfrepair.graphs import localise_repair
from selfrepair.sandbox.harness.guard import CANARY_ENV
from selfrepair.sandbox.local import LocalSandbox
from selfrepair.sandbox.spectrum import plugin_files, read_spectrum, trace_tests, traced_command
from selfrepair.sandbox.testing import run_tests
from selfrepair.sandbox.verdict import canaries, pytest_outcomes, read_guard
from test_localise_repair import make_repo

from selfrepair import types
from selfrepair.settings import Budget, Sampling

# Every test calls `evaluate`; the fault is four calls below it, in `negate`, which only the
# failing test's input reaches. The issue's words name the entry point.
CALC = '''"""Arithmetic typed by people."""
import functools


def evaluate(text):
    """'1 + -2' -> -1."""
    return total(text.split(" + "))


def total(terms):
    return sum(term(t) for t in terms)


def term(text):
    return factor(text.strip())


@functools.lru_cache(maxsize=None)
def factor(text):
    if text.startswith("-"):
        return negate(int(text[1:]))
    return int(text)


def negate(value):
    return value


def render(value):
    return str(value)
'''
TESTS = """from calc.core import evaluate


def test_adds():
    assert evaluate("1 + 2") == 3


def test_adds_three():
    assert evaluate("1 + 2 + 4") == 7


def test_negative():
    assert evaluate("1 + -2") == -1
"""
ISSUE = "evaluate gives the wrong total when a term is negative."


def calc_repo(root: Path, tests: str = TESTS) -> Path:
    return make_repo(
        root, {"calc/__init__.py": "", "calc/core.py": CALC, "tests/test_calc.py": tests}
    )


def calc_task(repo: Path) -> types.Task:
    return types.Task(
        task_id="calc-1",
        spec=ISSUE,
        repo=str(repo),
        tests=types.TestSpec(kind="command", command="python -m pytest -q", timeout_s=60),
    )


def names(ranked) -> list[str]:
    return [r.definition.qualname for r in ranked]


def check_spectrum_ranks_the_deep_fault_first(sandbox, tmp_path: Path) -> None:
    repo = calc_repo(tmp_path / "calc")
    task = calc_task(repo)
    base = run_tests(sandbox, task, workspace=repo)
    assert [c.name for c in base.failing] == ["tests/test_calc.py::test_negative"]
    static = names(suspects(repo, ISSUE, base.failing))
    assert "negate" not in static[:3]  # four calls below what the test calls

    spectrum = trace_tests(sandbox, task, repo)
    assert spectrum.reason == ""
    assert spectrum.failing == ["tests/test_calc.py::test_negative"]
    assert len(spectrum.executed) == 3
    # The workspace's functions only: not the tests', not functools' (a decorated function
    # is known by its decorator's line, as its Definition starts).
    assert spectrum.executed["tests/test_calc.py::test_negative"] == {
        ("calc/core.py", line)
        for line in (5, 10, 14, 18, 25)  # evaluate, total, term, factor, negate
    }
    ranked = suspects(
        repo, ISSUE, base.failing, executed=spectrum.executed, failed=spectrum.failing
    )
    assert names(ranked)[0] == "negate"
    assert "Ochiai 1.00" in ranked[0].reasons[-1]
    assert "render" not in names(ranked)  # no test ran it


def test_the_spectrum_ranks_a_fault_four_calls_deep_first_in_the_local_sandbox(tmp_path):
    check_spectrum_ranks_the_deep_fault_first(LocalSandbox(), tmp_path)


@pytest.mark.docker
def test_the_spectrum_ranks_a_fault_four_calls_deep_first_in_the_docker_sandbox(
    docker_sandbox, tmp_path
):
    check_spectrum_ranks_the_deep_fault_first(docker_sandbox, tmp_path)


def test_a_test_that_switches_the_tracer_off_leaves_the_static_ranking_with_the_reason(
    tmp_path,
):
    tests = TESTS + "\n\ndef test_profiles():\n    import sys\n    sys.setprofile(None)\n"
    repo = calc_repo(tmp_path / "calc", tests)
    spectrum = trace_tests(LocalSandbox(), calc_task(repo), repo)
    assert spectrum.reason == (
        "tracing was switched off during 1 test(s): tests/test_calc.py::test_profiles"
    )
    trajectory = repair_once(repo, tmp_path, "no idea")
    summary = trajectory.metadata["spectrum"]
    assert summary["reason"] == spectrum.reason and summary["tests"] == 4
    static = names(suspects(repo, ISSUE, trajectory_failing(repo)))
    assert [s["name"] for s in trajectory.metadata["suspects"]] == static


def repair_once(repo: Path, tmp_path: Path, reply: str) -> types.Trajectory:
    """localise-repair on the calc repository, one candidate on the first suspect."""
    replies = tmp_path / "replies.json"
    replies.write_text(json.dumps([reply]))
    return localise_repair.repair_localised(
        calc_task(repo),
        ScriptedModel(replies),
        LocalSandbox(),
        Budget(max_candidates=1),
        sampling=Sampling(samples=1),
        suspects=1,
    )


def trajectory_failing(repo: Path) -> list[types.TestCase]:
    return run_tests(LocalSandbox(), calc_task(repo), workspace=repo).failing


def test_localise_repair_records_the_spectrum_and_ranks_by_it(tmp_path):
    repo = calc_repo(tmp_path / "calc")
    trajectory = repair_once(
        repo, tmp_path, "```python\ndef negate(value):\n    return -value\n```"
    )
    summary = trajectory.metadata["spectrum"]
    assert summary["tests"] == 3 and summary["failing"] == 1 and summary["reason"] == ""
    assert summary["seconds"] > 0
    assert trajectory.metadata["suspects"][0]["name"] == "negate"
    assert trajectory.outcome == "solved", trajectory.error


@pytest.mark.parametrize(
    "raw, reason",
    [
        (b"{", "the tracer's output is unreadable"),
        (
            json.dumps(
                {"functions": [], "tests": {"t::a": {"outcome": "passed", "executed": []}}}
            ).encode(),
            "no traced test failed",
        ),
    ],
)
def test_unusable_tracer_output_is_a_reason_never_an_exception(raw, reason):
    assert read_spectrum(raw).reason.startswith(reason)


def test_the_tracer_is_not_taken_for_the_candidates_tampering_by_the_guard(tmp_path):
    """The tracer sets and clears profile functions, which the guard refuses to the
    candidate's code: in a guarded run with the candidate's file under suspicion, it loads
    beside the guard's plugin, and the guard's account (each test's outcome, the canaries,
    nothing refused) is the ordinary run's."""
    repo = calc_repo(tmp_path / "calc")
    task = calc_task(repo)
    sandbox = LocalSandbox()
    candidate = types.Candidate(files={"calc/core.py": CALC})
    ordinary = run_tests(sandbox, task, candidate, workspace=repo)
    assert ordinary.verdict == "guard" and not ordinary.suspicious

    seed = "0123456789abcdef0123456789abcdef"
    run = sandbox.execute(
        repo,
        ["sh", "-c", traced_command(task)],
        tests=plugin_files(task),
        env={"SELFREPAIR_SUSPECTS": "calc/core.py", CANARY_ENV: seed},
        collect=["spectrum.json"],
    )
    guard = read_guard(run.channel)
    cases, problems = pytest_outcomes(guard, run.exit_code)
    cases, warnings = canaries(guard, seed, cases)
    assert guard.refused == [] and problems == [] and warnings == []
    assert [(c.name, c.outcome) for c in cases] == [(c.name, c.outcome) for c in ordinary.tests]
    traced = read_spectrum(run.artifacts["spectrum.json"])
    assert traced.reason == "" and traced.failing == ["tests/test_calc.py::test_negative"]


@pytest.mark.parametrize("line", [18, 19])  # functools.lru_cache's line, factor's `def` line
def test_a_decorated_function_is_found_by_its_decorators_line_or_its_def_line(tmp_path, line):
    repo = calc_repo(tmp_path / "calc")
    executed = {"t::fails": {("calc/core.py", line)}, "t::passes": {("calc/core.py", 5)}}
    ranked = suspects(repo, "", executed=executed, failed=["t::fails"])
    assert names(ranked)[0] == "factor" and ranked[0].score == 1000.0
