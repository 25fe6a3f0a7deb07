"""Run a task's tests on a candidate in a sandbox and read the result into a TestReport.

The tests that run are always the task's own (TestSpec.files), placed in the sandbox's
read-only tests directory: a candidate's copy of a test file is never what runs.

  script   candidate entry file + "\\n\\n" + the test file, one Python script. Exit 0 alone
           is not a pass: the script's last line writes a per-run nonce to SELFREPAIR_OUT,
           so a candidate that exits 0 early (os._exit(0) at import) is caught.
  pytest   pytest over the tests directory (or the `select`ed ids), JUnit XML parsed into
           one TestCase per test, failing ones with their tracebacks.
  command  the task's shell command line in the workspace; pytest runs in it write JUnit
           XML (through PYTEST_ADDOPTS), anything else is judged by its exit status.
"""

from __future__ import annotations

import dataclasses
import secrets
import shlex
import subprocess
import tempfile
import xml.etree.ElementTree as ElementTree
from pathlib import Path, PurePosixPath

from selfrepair.errors import SelfRepairError
from selfrepair.sandbox.core import Execution, Limits, Sandbox, safe_relative
from selfrepair.types import Candidate, Task, TestCase, TestReport

JUNIT = "junit.xml"
DONE = "done"
PYTEST_OPTIONS = "-p no:cacheprovider -o junit_family=xunit1"


def run_tests(
    sandbox: Sandbox,
    task: Task,
    candidate: Candidate | None = None,
    workspace: Path | None = None,
) -> TestReport:
    """Test `candidate` (or the task's code as given) and return what the sandbox saw.

    `workspace` is a host directory already holding the code to test (a repository task
    after its patch); without it the workspace is the task's files with the candidate's
    files over them (or its diff applied). A candidate that cannot be laid out (a bad path,
    a diff that does not apply) comes back as a failed report, not an exception.
    """
    limits = dataclasses.replace(getattr(sandbox, "limits", None) or Limits(), wall_seconds=task.tests.timeout_s)
    if task.repo and workspace is None:
        raise SelfRepairError(f"task {task.task_id}: a repository task is tested in a prepared workspace directory")
    try:
        files = None if workspace is not None else _candidate_files(task, candidate)
    except SelfRepairError as error:
        return _refused(sandbox, str(error))

    spec = task.tests
    if spec.kind == "script":
        return _run_script(sandbox, task, files, workspace, limits)
    if spec.kind == "pytest":
        return _run_pytest(sandbox, task, files if workspace is None else workspace, limits)
    return _run_command(sandbox, task, files, workspace, limits)


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
            cwd=root, input=diff, capture_output=True, text=True,
        )
        if applied.returncode != 0:
            raise SelfRepairError(f"the diff does not apply: {applied.stderr.strip().splitlines()[-1:]}")
        return {
            str(path.relative_to(root)): path.read_text(errors="replace")
            for path in root.rglob("*")
            if path.is_file()
        }


def _run_script(sandbox, task, files, workspace, limits) -> TestReport:
    entry = task.entry_file or (next(iter(task.files)) if len(task.files) == 1 else None)
    if entry is None:
        raise SelfRepairError(f"task {task.task_id}: a script task needs an entry_file")
    if files is not None:
        program = files.get(entry, "")
        place = files
    else:
        program = (workspace / entry).read_text(errors="replace")
        place = workspace
    (test_name, test_code), = task.tests.files.items()
    script_name = PurePosixPath(safe_relative(test_name)).name
    if not script_name.endswith(".py"):
        script_name += ".py"
    nonce = secrets.token_hex(16)
    # The last statement proves the tests ran to their end; an early exit never reaches it.
    marker = (
        "\n\nimport os as _selfrepair_os\n"
        f"with open(_selfrepair_os.path.join(_selfrepair_os.environ['SELFREPAIR_OUT'], {DONE!r}), 'w') as _f:\n"
        f"    _f.write({nonce!r})\n"
    )
    script = program + "\n\n" + test_code + marker
    run = sandbox.execute(
        place,
        ["python", f"$SELFREPAIR_TESTS/{script_name}"],
        tests={script_name: script},
        limits=limits,
        collect=[DONE],
    )
    finished = run.artifacts.get(DONE, b"").decode(errors="replace") == nonce
    reason = _run_trouble(run, limits)
    if not reason and run.exit_code == 0 and not finished:
        reason = "the script exited 0 before its tests finished (an early exit faking a pass)"
    if not reason and run.exit_code != 0:
        reason = f"exit status {run.exit_code}: {_last_line(run.stderr) or 'no error message'}"
    outcome = "passed" if not reason else ("failed" if "AssertionError" in _last_line(run.stderr) else "error")
    case = TestCase(
        name=task.task_id,
        outcome=outcome,
        message="" if not reason else reason,
        traceback="" if not reason else _traceback(run.stderr),
        seconds=run.wall_seconds,
    )
    return _report(run, [case], reason)


def _run_pytest(sandbox, task, place, limits) -> TestReport:
    spec = task.tests
    suite = secrets.token_hex(8)  # a JUnit file the candidate forged would not carry it
    targets = [f"$SELFREPAIR_TESTS/{safe_relative(test_id)}" for test_id in spec.select] or ["$SELFREPAIR_TESTS"]
    command = [
        "python", "-P", "-m", "pytest", "-q", *PYTEST_OPTIONS.split(),
        "-o", f"junit_suite_name={suite}", "--rootdir=$SELFREPAIR_TESTS",
        f"--junitxml=$SELFREPAIR_OUT/{JUNIT}", *targets,
    ]
    run = sandbox.execute(place, command, tests=dict(spec.files), limits=limits, collect=[JUNIT])
    return _pytest_report(run, limits, suite)


def _run_command(sandbox, task, files, workspace, limits) -> TestReport:
    spec = task.tests
    place = workspace if files is None else files
    if files is not None and spec.files:
        # The task's tests replace any copy the candidate brought along.
        place = {**files, **spec.files}
    addopts = f"{PYTEST_OPTIONS} --junitxml=$SELFREPAIR_OUT/{JUNIT}"
    line = f"export PYTEST_ADDOPTS={shlex.quote(addopts)}\n{spec.command}"
    run = sandbox.execute(place, ["sh", "-c", line], tests=dict(spec.files), limits=limits, collect=[JUNIT])
    if JUNIT in run.artifacts:
        return _pytest_report(run, limits, suite=None)
    reason = _run_trouble(run, limits)
    if not reason and run.exit_code != 0:
        reason = f"`{spec.command}` exited with status {run.exit_code}: {_last_line(run.stderr) or _last_line(run.stdout)}"
    case = TestCase(
        name=spec.command or "command",
        outcome="passed" if not reason else "failed",
        message=reason,
        traceback=_traceback(run.stderr) if reason else "",
        seconds=run.wall_seconds,
    )
    return _report(run, [case], reason)


def _pytest_report(run: Execution, limits: Limits, suite: str | None) -> TestReport:
    cases, reason = parse_junit(run.artifacts.get(JUNIT), suite)
    trouble = _run_trouble(run, limits)
    failing = [case for case in cases if case.outcome in ("failed", "error")]
    if trouble:
        reason = trouble
    elif not reason and failing:
        names = ", ".join(case.name for case in failing[:5])
        reason = f"{len(failing)} of {len(cases)} tests failed: {names}{', ...' if len(failing) > 5 else ''}"
    elif not reason and not cases:
        reason = "no tests ran"
    elif not reason and run.exit_code != 0:
        reason = f"exit status {run.exit_code}: {_last_line(run.stderr) or _last_line(run.stdout)}"
    if reason and not failing:
        # Nothing itemised failed, yet the run did: say so as a test of its own.
        cases.append(TestCase(name="<run>", outcome="error", message=reason, traceback=_traceback(run.stderr)))
    return _report(run, cases, reason)


def parse_junit(xml: bytes | None, suite: str | None = None) -> tuple[list[TestCase], str]:
    """TestCases from pytest's JUnit XML (xunit1 family), and a reason when there are none.

    `suite`, when given, must be the file's test-suite name: the nonce this run asked for.
    """
    if not xml:
        return [], "pytest wrote no report: the run ended before pytest finished (crash or early exit)"
    try:
        root = ElementTree.fromstring(xml)
    except ElementTree.ParseError as error:
        return [], f"pytest's report is not valid XML ({error})"
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    if suite is not None and not any(s.get("name") == suite for s in suites):
        return [], "the JUnit report was not written by this run's pytest (forged?)"
    cases = []
    for element in root.iter("testcase"):
        outcome, message, detail = "passed", "", ""
        for child in element:
            if child.tag in ("failure", "error", "skipped"):
                outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[child.tag]
                message = child.get("message", "")
                detail = child.text or ""
                break
        cases.append(
            TestCase(
                name=_node_id(element),
                outcome=outcome,
                message=message,
                traceback=detail if outcome in ("failed", "error") else "",
                seconds=float(element.get("time") or 0.0),
            )
        )
    return cases, ""


def _node_id(element) -> str:
    """pytest's node id (file::Class::name) from an xunit1 testcase element."""
    name = element.get("name", "")
    classname = element.get("classname", "")
    file = element.get("file")
    if not file:
        return f"{classname}::{name}" if classname else name
    module = file[:-3].replace("/", ".") if file.endswith(".py") else file
    inner = classname[len(module) + 1 :] if classname.startswith(module + ".") else ""
    return "::".join(part for part in (file, *inner.split(".")) if part) + f"::{name}"


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


def _report(run: Execution, cases: list[TestCase], reason: str) -> TestReport:
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
