"""Why each sampled reply failed, so that an arm's score can be read by cause: a model that
learned only to stop in time gains on "cut off" and nowhere else.

Each reply gets one kind, the first that applies:
  pass              its candidate passed the tests
  cut off           the reply hit the token or time limit (finish reason "length" or "time")
  no code           no candidate could be read from the reply
  unchanged         the reply's code is the code it was given (extraction said so, or the
                    candidate has the same syntax tree)
  does not compile  a Python file of the candidate is not valid Python
  wrong             it compiles and changes the code, and the tests fail
"""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

from selfrepair.store import TrajectoryStore
from selfrepair.types import Candidate, Step, Task

# The steps whose reply is a whole candidate (a localisation or a test input is not).
CANDIDATE_STEPS = ("solve", "refine", "sample", "expand", "edit")
KINDS = ("pass", "cut off", "no code", "unchanged", "does not compile", "wrong")


def same_code(a: str, b: str) -> bool:
    """Equal as syntax trees (formatting and comments aside), or as text where either does
    not parse."""
    try:
        return ast.dump(ast.parse(a)) == ast.dump(ast.parse(b))
    except SyntaxError:
        return a.strip() == b.strip()


def compiles(candidate: Candidate) -> bool:
    for path, text in candidate.files.items():
        if path.endswith(".py"):
            try:
                compile(text, path, "exec")
            except (SyntaxError, ValueError):
                return False
    return True


def failure_kind(step: Step, task: Task) -> str:
    """The kind of one reply (one of KINDS)."""
    if step.candidate is not None and step.report is not None and step.report.passed:
        return "pass"
    if step.finish_reason in ("length", "time"):
        return "cut off"
    candidate = step.candidate
    if candidate is None:
        # Extraction refuses a reply that gives the code back as it was: no candidate, but
        # not for want of code (agents/code/extract.py says which).
        return "unchanged" if "code is the same as" in step.error else "no code"
    if not candidate.diff.strip() and all(
        same_code(text, task.files.get(path, "")) for path, text in candidate.files.items()
    ):
        return "unchanged"
    if not compiles(candidate):
        return "does not compile"
    return "wrong"


def failure_kinds(run_dir: Path) -> dict[str, object]:
    """Every reply of a run directory counted by kind, with the cut-off rate (cut replies over
    all replies: what the reply limit must keep small)."""
    with TrajectoryStore(run_dir, read_only=True) as store:
        trajectories = list(store.trajectories())
    kinds = Counter(
        failure_kind(step, t.task)
        for t in trajectories
        for step in t.steps
        if step.kind in CANDIDATE_STEPS
    )
    replies = sum(kinds.values())
    return {
        "replies": replies,
        "kinds": {kind: kinds.get(kind, 0) for kind in KINDS},
        "cut_off_rate": round(kinds.get("cut off", 0) / replies, 4) if replies else None,
    }
