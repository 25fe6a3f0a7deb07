"""Which functions of a workspace each of its tests executes: the suite's spectrum, for
spectrum-based fault localisation (agents.code.suspects).

The task's test command runs once on the code as given, with a pytest plugin
(`tracer/selfrepair_spectrum.py`) laid out in the tests' read-only folder and loaded with
`-p`; it writes, per test, its outcome and the (path, first line) of every function of the
workspace it entered (not the tests', not installed packages'). The run is guarded as any
run is, but it is never a verdict: its outcomes only say which tests fail for localisation.
Anything that goes wrong comes back as a Spectrum with its `reason`, never an exception.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from selfrepair.sandbox.core import Limits, Sandbox, safe_relative

from selfrepair.types import Task

PLUGIN = "selfrepair_spectrum"
FOLDER = "_selfrepair_spectrum"  # the plugin's own folder in the tests' directory
OUTPUT = "spectrum.json"
MAX_TESTS = 1000  # tests traced, in the order pytest runs them; the rest run untraced
SLOWDOWN = 3.0  # the traced run may take this many times the task's test timeout


@dataclass(frozen=True)
class Spectrum:
    """Per traced test, its outcome and the functions it executed ((path, first line))."""

    executed: dict[str, frozenset[tuple[str, int]]] = field(default_factory=dict)
    outcomes: dict[str, str] = field(default_factory=dict)
    untraced: int = 0  # tests past MAX_TESTS, run without the tracer
    seconds: float = 0.0  # the traced run's wall time
    reason: str = ""  # why there is no usable spectrum; "" when there is

    @property
    def failing(self) -> list[str]:
        return [test for test, outcome in self.outcomes.items() if outcome == "failed"]

    def summary(self) -> dict:
        return {
            "tests": len(self.executed),
            "failing": len(self.failing),
            "untraced": self.untraced,
            "seconds": round(self.seconds, 2),
            "reason": self.reason,
        }


def plugin_source() -> str:
    return resources.files("selfrepair.sandbox").joinpath(f"tracer/{PLUGIN}.py").read_text()


def traced_command(task: Task, max_tests: int = MAX_TESTS) -> str | None:
    """The shell command that runs `task`'s tests with the tracer; None where no pytest runs
    them (a script task)."""
    spec = task.tests
    if spec.kind == "command" and spec.command:
        tested = spec.command
    elif spec.kind == "pytest":
        targets = [shlex.quote(safe_relative(t)) for t in spec.select]
        tested = "python -m pytest -q " + " ".join(targets)
    else:
        return None
    # The plugin's folder joins the path of every Python process; `-p` goes after what the
    # guard put in PYTEST_ADDOPTS, so both plugins load in every pytest process.
    return (
        f'PYTHONPATH="$SELFREPAIR_TESTS/{FOLDER}:$PYTHONPATH" '
        f'PYTEST_ADDOPTS="$PYTEST_ADDOPTS -p {PLUGIN}" '
        f"SELFREPAIR_SPECTRUM_TESTS={int(max_tests)} {tested}"
    )


def plugin_files(task: Task) -> dict[str, str]:
    """The tests' folder of a traced run: the task's own test files and the plugin."""
    return dict(task.tests.files) | {f"{FOLDER}/{PLUGIN}.py": plugin_source()}


def trace_tests(
    sandbox: Sandbox, task: Task, workspace: Path, *, max_tests: int = MAX_TESTS
) -> Spectrum:
    """Run `task`'s tests (a command, or pytest on its selected tests) in the prepared
    `workspace` with the tracer; the spectrum, or one whose `reason` says why there is none."""
    spec = task.tests
    command = traced_command(task, max_tests)
    if command is None:
        return Spectrum(reason=f"a {spec.kind} task's tests are not run by pytest")
    limits = getattr(sandbox, "limits", None) or Limits()
    limits = dataclasses.replace(limits, wall_seconds=spec.timeout_s * SLOWDOWN)
    tests = plugin_files(task)
    started = time.perf_counter()
    run = sandbox.execute(
        workspace, ["sh", "-c", command], tests=tests, limits=limits, collect=[OUTPUT]
    )
    seconds = time.perf_counter() - started
    if run.timed_out:
        return Spectrum(
            seconds=seconds, reason=f"the traced run timed out ({limits.wall_seconds:g} s)"
        )
    raw = run.artifacts.get(OUTPUT)
    if not raw:
        said = (run.stderr.strip() or run.stdout.strip()).splitlines()[-1:] or [""]
        return Spectrum(
            seconds=seconds,
            reason=f"the tracer wrote nothing (exit status {run.exit_code}: {said[0][:200]})",
        )
    return read_spectrum(raw, seconds)


def read_spectrum(raw: bytes, seconds: float = 0.0) -> Spectrum:
    """The tracer's JSON as a Spectrum; a reason instead where it is unreadable, where a test
    switched the tracer off (what it executed after that is unknown), or where no traced test
    failed (nothing to localise from)."""
    try:
        record = json.loads(raw)
        functions = [(str(path), int(line)) for path, line in record["functions"]]
        executed = {
            str(test): frozenset(functions[i] for i in entry["executed"])
            for test, entry in record["tests"].items()
        }
        outcomes = {str(test): str(entry["outcome"]) for test, entry in record["tests"].items()}
        untraced, broken = int(record.get("untraced", 0)), list(record.get("broken", []))
    except (ValueError, KeyError, TypeError, IndexError) as error:
        return Spectrum(seconds=seconds, reason=f"the tracer's output is unreadable: {error}")
    spectrum = Spectrum(executed, outcomes, untraced, seconds)
    if broken:
        shown = ", ".join(broken[:3]) + (", ..." if len(broken) > 3 else "")
        reason = f"tracing was switched off during {len(broken)} test(s): {shown}"
    elif not spectrum.failing:
        reason = "no traced test failed"
    else:
        return spectrum
    return dataclasses.replace(spectrum, reason=reason)
