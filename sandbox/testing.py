"""Run a task's tests on a candidate in a sandbox and read the result into a TestReport.

The tests that run are always the task's own (TestSpec.files), never a candidate's copy, and
the decision "this test passed" is made where the candidate's code cannot reach (the threat
model is in sandbox/README.md):

  judged   the judge, a process of its own that never runs candidate code, runs the tests and
           calls the candidate through the worker on plain data (`harness/judge.py`). Used for
           every task laid out from files: script tasks (QuixBugs, HumanEval), pytest tasks,
           and command tasks whose command is a plain pytest run.
  guarded  the candidate's code shares pytest's process (a repository, any other command): the
           guard refuses and records reaches for the harness, and its reports (each stamped by
           the kernel with its writer's pid) must add up (`harness/guard.py`, `verdict.py`);
           otherwise the exit status decides.

A run that looks like an attempt on the verdict (a forged or missing report, an early exit, a
refused reach, tampering with the tests) carries the reason in `TestReport.suspicious` and
never passes.
"""

from __future__ import annotations

import dataclasses
import re
import secrets
import shlex
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from selfrepair.sandbox.core import Execution, Limits, Sandbox, safe_relative
from selfrepair.sandbox.harness.guard import CANARY_ENV, altered_script
from selfrepair.sandbox.judging import against_baseline
from selfrepair.sandbox.verdict import canaries, pytest_outcomes, read_guard, read_judge

from selfrepair.errors import SelfRepairError
from selfrepair.paths import diff_paths
from selfrepair.types import Candidate, Task, TestCase, TestReport

PYTHON_FLAGS = ("-B", "-u", "-P", "-s", "-E")
SHELL_SYNTAX = set(";&|<>()`$\n")
NO_TESTS = "no tests ran"  # a report's reason when the run collected no test at all
NO_PYTHON = "no Python process ran"  # said of a failed command that ran no Python at all
# What Python and pytest print when the command itself cannot start: no such module or
# script (`python -m nosuchmodule`, `python nosuch.py`), or arguments pytest (or any argparse
# program) refuses: "usage: PROG ..." then "PROG: error: ...", whatever PROG is called (pytest
# in the judge under Docker calls itself "-c").
START_FAILURE = re.compile(
    r"^\S*python[\d.]*: (No module named |can't open file |Error while finding module specification ).*$"
    r"|^(?:ERROR: )?usage: (?P<prog>\S+) .*\n(?P=prog): error: (?P<refusal>.*)$",
    re.MULTILINE,
)


def run_tests(
    sandbox: Sandbox,
    task: Task,
    candidate: Candidate | None = None,
    workspace: Path | None = None,
    expect: Sequence[str] = (),
    seconds: float | None = None,
) -> TestReport:
    """Test `candidate` (or the task's code as given) and return what the sandbox saw.

    `workspace` is a host directory already holding the code to test (a repository task
    after its patch); without it the workspace is the task's files with the candidate's
    files over them (or its diff applied). `expect` names tests that must be among those
    reported (the tests that ran on the code as given): a run that skips or loses one is not
    a pass, and is suspicious (`judging.against_baseline`). `seconds` cuts the run sooner than
    the task's own timeout (what is left of a time budget); a cut run is a timeout. A
    candidate that cannot be laid out (a bad path, a diff that does not apply) comes back as a
    failed report, not an exception.
    """
    report = against_baseline(_run(sandbox, task, candidate, workspace, seconds), expect)
    skipped = [case.name for case in report.tests if case.outcome == "skipped"]
    if skipped and not report.reason:
        what = ", ".join(skipped[:5]) + (", ..." if len(skipped) > 5 else "")
        report = report.model_copy(
            update={"reason": f"{len(skipped)} test(s) skipped, and skipped is not passed: {what}"}
        )
    return report


def _run(
    sandbox: Sandbox,
    task: Task,
    candidate: Candidate | None,
    workspace: Path | None,
    seconds: float | None,
) -> TestReport:
    wall = task.tests.timeout_s if seconds is None else min(seconds, task.tests.timeout_s)
    limits = dataclasses.replace(getattr(sandbox, "limits", None) or Limits(), wall_seconds=wall)
    if task.repo and workspace is None:
        raise SelfRepairError(
            f"task {task.task_id}: a repository task is tested in a prepared workspace directory"
        )
    try:
        files = None if workspace is not None else _candidate_files(task, candidate)
    except SelfRepairError as error:
        return _refused(sandbox, str(error))

    spec = task.tests
    if files is not None:
        if spec.kind == "script":
            return _judged_script(sandbox, task, files, limits)
        if spec.kind == "pytest" and spec.files:
            return _judged_pytest(sandbox, task, files, ["-q", *spec.select], limits)
        arguments = pytest_arguments(spec.command) if spec.kind == "command" else None
        if arguments is not None:
            return _judged_pytest(sandbox, task, files, arguments, limits)
    elif spec.kind == "script":
        raise SelfRepairError(
            f"task {task.task_id}: a script task is tested from its files, not a workspace"
        )
    return _guarded(sandbox, task, files if workspace is None else workspace, candidate, limits)


def untestable(report: TestReport) -> str:
    """Why a run shows that its test command tests nothing, or "" when it tested: it ran no
    tests (or failed without running Python at all), or the command could not start (the
    shell found no such command, or Python no such module or script, or pytest, or any
    argparse program, refused its arguments). Read on the code as given, before any repair:
    against such a command every candidate fails, or passes, alike."""
    if report.suspicious or report.timed_out or report.out_of_memory:
        return ""
    said = _last_line(report.stderr)
    if report.exit_code in (126, 127):  # the shell's "cannot execute" and "not found"
        return f"it cannot start: {said or report.reason}"
    if report.reason == NO_TESTS:
        return "it ran no tests" + (f" ({said})" if said else "")
    if report.verdict == "exit status" and report.reason.endswith(f"({NO_PYTHON})"):
        # No Python ran, so none of the code under repair did (`false`, `exit 1`).
        return f"it ran no tests ({NO_PYTHON}; exit status {report.exit_code})"
    # A command that got as far as running tests reported them; one that could not start
    # reported only itself (judged by its exit status) or pytest's stand-in for the run.
    itemised = (
        []
        if report.verdict == "exit status"
        else [case for case in report.tests if case.name != "<run>"]
    )
    opening = "\n".join(
        [line for line in report.stderr.splitlines() if line.strip()][:3]
    )  # where it says so
    failure = START_FAILURE.search(opening)
    if failure and not itemised:
        refusal = failure.group("refusal")
        said = f"its arguments are refused: {refusal}" if refusal else failure.group(0)
        return f"it cannot start: {said.strip()}"
    return ""


def pytest_arguments(command: str | None) -> list[str] | None:
    """pytest's arguments when `command` is a plain pytest run (`pytest ARGS`, `python -m
    pytest ARGS`); None for anything else (a pipeline, a script, another tool)."""
    if not command or SHELL_SYNTAX & set(command):
        return None
    try:
        words = shlex.split(command)
    except ValueError:
        return None
    if words and words[0] in ("pytest", "py.test"):
        return words[1:]
    if words and words[0] in ("python", "python3"):
        rest = words[1:]
        while rest and rest[0] in PYTHON_FLAGS:
            rest = rest[1:]
        if rest[:2] == ["-m", "pytest"]:
            return rest[2:]
    return None


def _candidate_files(task: Task, candidate: Candidate | None) -> dict[str, str]:
    files = dict(task.files)
    if candidate is None:
        return files
    for path in candidate.files:
        safe_relative(path)
    files.update(candidate.files)
    if candidate.diff.strip():
        files = _apply_diff(files, candidate.diff)
    return files


def _apply_diff(files: dict[str, str], diff: str) -> dict[str, str]:
    with tempfile.TemporaryDirectory(prefix="selfrepair-diff-") as folder:
        root = Path(folder)
        for path, text in files.items():
            target = root / safe_relative(path)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        applied = subprocess.run(
            ["git", "apply", "--whitespace=nowarn", "-"],
            cwd=root,
            input=diff,
            capture_output=True,
            text=True,
        )
        if applied.returncode != 0:
            raise SelfRepairError(
                f"the diff does not apply: {applied.stderr.strip().splitlines()[-1:]}"
            )
        return {
            str(path.relative_to(root)): path.read_text(errors="replace")
            for path in root.rglob("*")
            if path.is_file()
        }


# -- judged runs ----------------------------------------------------------------------------


def _judged_script(
    sandbox: Sandbox, task: Task, files: dict[str, str], limits: Limits
) -> TestReport:
    entry = task.entry_file or (next(iter(task.files)) if len(task.files) == 1 else None)
    if entry is None:
        raise SelfRepairError(f"task {task.task_id}: a script task needs an entry_file")
    ((test_name, test_code),) = task.tests.files.items()
    script_name = PurePosixPath(safe_relative(test_name)).name
    if not script_name.endswith(".py"):
        script_name += ".py"
    config = {"mode": "script", "test_file": script_name, "entry": entry, "name": task.task_id}
    run = sandbox.judge(files, config, tests={script_name: test_code}, limits=limits)
    return _judged_report(run, limits)


def _judged_pytest(
    sandbox: Sandbox, task: Task, files: dict[str, str], arguments: list[str], limits: Limits
) -> TestReport:
    spec = task.tests
    # The judge's folder: the task's tests, and the task's own data files (never the candidate's).
    tests = {path: text for path, text in task.files.items() if not path.endswith(".py")} | dict(
        spec.files
    )
    config = {"mode": "pytest", "modules": editable_modules(task), "args": arguments}
    run = sandbox.judge(files, config, tests=tests, limits=limits)
    return _judged_report(run, limits)


def editable_modules(task: Task) -> list[str]:
    """The modules the tests import from the candidate: the task's own code, by top-level name,
    never a module of the tests (a helper beside them) nor one the candidate adds (which would
    otherwise shadow a helper or a library the tests import)."""
    tests = {_module_of(path) for path in task.tests.files if path.endswith(".py")}
    code = {
        _module_of(path)
        for path in task.files
        if path.endswith(".py") and path not in task.tests.files
    }
    return sorted(code - tests - {"conftest"})


def _module_of(path: str) -> str:
    top = PurePosixPath(path).parts[0]
    return top[:-3] if top.endswith(".py") else top


def _judged_report(run: Execution, limits: Limits) -> TestReport:
    verdict = read_judge(run.channel)
    trouble = _run_trouble(run, limits)
    suspicious = list(verdict.suspicious if verdict else [])
    if any("tests were modified" in note for note in run.notes):
        suspicious.append("the candidate modified or deleted the tests")
    cases = verdict.tests if verdict else []
    if any(case.message.startswith("MemoryError") for case in cases):
        run = dataclasses.replace(run, out_of_memory=True)  # the worker hit its address-space limit
        trouble = _run_trouble(run, limits)
    if trouble:
        reason = trouble
    elif verdict is None:
        reason = "the judge wrote no verdict (the run was cut short)"
    elif not verdict.finished:
        reason = "the tests did not run to their end"
    else:
        reason = _failing_reason(cases)
    return _report(run, cases, reason, suspicious, "judge")


# -- guarded runs ---------------------------------------------------------------------------


def _guarded(
    sandbox: Sandbox,
    task: Task,
    place,
    candidate: Candidate | None,
    limits: Limits,
) -> TestReport:
    spec = task.tests
    if spec.kind == "pytest":
        targets = [f"$SELFREPAIR_TESTS/{safe_relative(test_id)}" for test_id in spec.select] or [
            "$SELFREPAIR_TESTS"
        ]
        command = [
            "python",
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--rootdir=$SELFREPAIR_TESTS",
            *targets,
        ]
    else:
        command = ["sh", "-c", spec.command]
        if isinstance(place, dict) and spec.files:
            place = {
                **place,
                **spec.files,
            }  # the task's tests replace any copy the candidate brought
    suspects = ":".join(_changed_paths(candidate))
    seed = secrets.token_hex(16)  # this run's canaries (`verdict.canaries`)
    run = sandbox.execute(
        place,
        command,
        tests=dict(spec.files),
        limits=limits,
        env={"SELFREPAIR_SUSPECTS": suspects, CANARY_ENV: seed},
    )
    guard = read_guard(run.channel)
    trouble = _run_trouble(run, limits)
    suspicious = [f"refused: {event}" for event in guard.refused]
    if any("tests were modified" in note for note in run.notes):
        suspicious.append("the candidate modified or deleted the tests")
    ran_pytest = any(p.runs_pytest for p in guard.processes.values()) or guard.sessions
    if not ran_pytest:
        suspicious += guard.problems + guard.early_exits
        reason = trouble or (
            "" if run.exit_code == 0 else _exit_reason(spec.command or "the command", run)
        )
        if reason and not trouble and not guard.processes:
            reason += f" ({NO_PYTHON})"
        if not reason and not suspicious and isinstance(place, dict):
            canary = _command_canary(
                sandbox, spec, place, command, limits, {"SELFREPAIR_SUSPECTS": suspects}
            )
            if canary:
                reason = canary
                suspicious.append(canary)
        name = spec.command or "command"
        case = TestCase(
            name=name,
            outcome="passed" if not reason else "failed",
            message=reason,
            traceback=_traceback(run.stderr) if reason else "",
            seconds=run.wall_seconds,
        )
        return _report(run, [case], reason, suspicious, "exit status")
    cases, problems = pytest_outcomes(guard, run.exit_code)
    cases, warnings = canaries(guard, seed, cases)
    problems += warnings
    suspicious += [p for p in problems if "forged" in p or "early exit" in p or "canary" in p]
    if trouble:
        reason = trouble
    elif problems:
        reason = problems[0]
    elif not cases:
        reason = NO_TESTS
    else:
        reason = _failing_reason(cases) or (
            "" if run.exit_code == 0 else _exit_reason("pytest", run)
        )
    return _report(run, cases, reason, suspicious, "guard")


def _command_canary(
    sandbox: Sandbox, spec, place: dict, command: list[str], limits: Limits, env: dict
) -> str:
    """A command that passed runs once more with a must-fail twin of the task's test script
    (its first `assert X == constant` altered, `guard.altered_script`); why the run is
    suspicious when the twin passes too (a value that equals anything), or ""."""
    for path, text in spec.files.items():
        twin = altered_script(text) if path.endswith(".py") else None
        if twin is None:
            continue
        run = sandbox.execute(
            {**place, path: twin},
            command,
            tests={**spec.files, path: twin},
            limits=limits,
            env=env,
        )
        if run.exit_code == 0 and not run.timed_out:
            return (
                f"a must-fail canary ({path} with an expected value altered) passed too: "
                "the candidate's values equal anything"
            )
        return ""
    return ""


def _changed_paths(candidate: Candidate | None) -> list[str]:
    if candidate is None:
        return []
    return sorted(set(candidate.files) | set(diff_paths(candidate.diff)))


# -- reports ----------------------------------------------------------------------------------


def _failing_reason(cases: list[TestCase]) -> str:
    failing = [case for case in cases if case.outcome in ("failed", "error")]
    if not cases:
        return NO_TESTS
    if not failing:
        return ""
    names = ", ".join(case.name for case in failing[:5])
    first = failing[0].message.strip().splitlines()[-1] if failing[0].message.strip() else ""
    return (
        f"{len(failing)} of {len(cases)} tests failed: {names}{', ...' if len(failing) > 5 else ''}"
        + (f" ({first[:300]})" if first else "")
    )


def _exit_reason(what: str, run: Execution) -> str:
    return f"`{what}` exited with status {run.exit_code}: {_last_line(run.stderr) or _last_line(run.stdout)}"


def _run_trouble(run: Execution, limits: Limits) -> str:
    """The reason a run failed regardless of its tests: timeout, memory, tampering, leftovers."""
    if run.timed_out:
        return f"timed out after {limits.wall_seconds:g} s (the whole process tree was killed)"
    if run.out_of_memory:
        return f"ran out of memory (limit {limits.memory_mb} MB)"
    for note in run.notes:
        if "tests were modified" in note:
            return "the candidate modified or deleted the tests"
        if "left processes" in note:
            return "the candidate left processes running after the tests ended"
    return ""


def _report(
    run: Execution, cases: list[TestCase], reason: str, suspicious: list[str], verdict: str
) -> TestReport:
    suspicion = "; ".join(dict.fromkeys(suspicious))
    if suspicion and not reason:
        reason = f"suspicious: {suspicion}"
    if reason and not any(case.outcome in ("failed", "error") for case in cases):
        # Nothing itemised failed, yet the run did: say so as a test of its own.
        cases = [
            *cases,
            TestCase(
                name="<run>", outcome="error", message=reason, traceback=_traceback(run.stderr)
            ),
        ]
    return TestReport(
        tests=cases,
        exit_code=run.exit_code,
        stdout=run.stdout,
        stderr=run.stderr,
        stdout_cut_bytes=run.stdout_cut_bytes,
        stderr_cut_bytes=run.stderr_cut_bytes,
        wall_seconds=run.wall_seconds,
        cpu_seconds=run.cpu_seconds,
        timed_out=run.timed_out,
        out_of_memory=run.out_of_memory,
        sandbox=run.sandbox,
        reason=reason,
        suspicious=suspicion,
        verdict=verdict,
    )


def _refused(sandbox: Sandbox, reason: str) -> TestReport:
    case = TestCase(name="<workspace>", outcome="error", message=reason)
    return TestReport(tests=[case], exit_code=None, sandbox=sandbox.name, reason=reason)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _traceback(stderr: str) -> str:
    """The last traceback in stderr, or its tail when there is none."""
    start = stderr.rfind("Traceback (most recent call last)")
    return stderr[start:] if start >= 0 else stderr[-4000:]
