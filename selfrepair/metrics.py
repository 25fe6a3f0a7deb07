"""Honest accounting: one result row per trajectory (`results.jsonl`) and the run's summary.

pass@1 is whether the first candidate passed; pass@k whether one of the first k did;
pass@t ("Demystifying GPT self-repair") is the repair rate against tokens spent: for each
token budget, the share of tasks solved by the time that many tokens were spent on them.

Over-editing, where a task carries its reference fix (QuixBugs' `solution`, in its
metadata): the lines a candidate changes (removed plus added, against the code as given)
beyond those the reference fix changes; 0 for a fix no larger than the reference's.

A row's `samples` (model replies) and `passed_candidates` are the n and c of the unbiased
pass@k estimator (selfrepair.stats) where the replies are independent samples (best-of-n).
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Iterable
from statistics import mean
from typing import Any

from selfrepair.types import Candidate, Task, Trajectory


def result_row(trajectory: Trajectory) -> dict[str, Any]:
    """The per-task line of `results.jsonl`."""
    candidates = [s for s in trajectory.steps if s.candidate is not None]
    tokens_so_far = 0
    tokens_to_solve = None
    candidates_to_solve = None
    for step in trajectory.steps:
        tokens_so_far += step.tokens
        if trajectory.solution_step is not None and step.index == trajectory.solution_step:
            tokens_to_solve = tokens_so_far
            candidates_to_solve = 1 + sum(s.index < step.index for s in candidates)
    beyond = {s.index: lines_beyond_reference(trajectory.task, s.candidate) for s in candidates}
    return {
        "task_id": trajectory.task.task_id,
        "trajectory_id": trajectory.trajectory_id,
        "strategy": trajectory.strategy,
        "model": trajectory.model,
        "outcome": trajectory.outcome,
        "solved": trajectory.solved,
        "first_passed": bool(candidates and candidates[0].report and candidates[0].report.passed),
        "candidates": len(candidates),
        "samples": sum(
            step.kind not in ("inputs", "reproduce") for step in trajectory.steps
        ),  # model replies meant as fixes
        "passed_candidates": len(trajectory.passing()),
        "candidates_to_solve": candidates_to_solve,
        "tokens": trajectory.tokens,
        "tokens_to_solve": tokens_to_solve,
        "prompt_tokens": sum(s.prompt_tokens for s in trajectory.steps),
        "completion_tokens": sum(s.completion_tokens for s in trajectory.steps),
        "reviewer_errors": sum(s.reviewer_error for s in trajectory.steps),
        "truncated_replies": sum(s.finish_reason == "length" for s in trajectory.steps),
        # Candidates whose run looked like an attempt on the verdict (see sandbox/README.md).
        "suspicious": sum(bool(s.report and s.report.suspicious) for s in trajectory.steps),
        "model_seconds": round(sum(s.model_seconds for s in trajectory.steps), 3),
        "sandbox_seconds": round(trajectory.sandbox_seconds, 3),
        "wall_seconds": round(trajectory.wall_seconds, 3),
        # Over-editing: the solution's lines changed beyond the reference fix, and the mean
        # over every candidate of the task (None where the task carries no reference).
        "lines_beyond_reference": beyond.get(trajectory.solution_step),
        "candidate_lines_beyond_reference": (
            mean(beyond.values()) if beyond and None not in beyond.values() else None
        ),
        "error": trajectory.error,
    }


@functools.lru_cache(maxsize=64)  # a task's reference fix, measured again for every candidate
def lines_changed(before: str, after: str) -> int:
    """Lines removed plus lines added from `before` to `after`; trailing whitespace and
    blank lines at the end do not count."""
    old, new = ([line.rstrip() for line in text.rstrip().splitlines()] for text in (before, after))
    opcodes = difflib.SequenceMatcher(None, old, new, autojunk=False).get_opcodes()
    return sum((i2 - i1) + (j2 - j1) for tag, i1, i2, j1, j2 in opcodes if tag != "equal")


def lines_beyond_reference(task: Task, candidate: Candidate) -> int | None:
    """How many more lines `candidate` changes in the task's entry file than the task's
    reference fix does; None when the task carries no reference or the candidate is a diff."""
    reference = task.metadata.get("solution")
    if not isinstance(reference, str) or task.entry_file is None or candidate.diff.strip():
        return None
    original = task.files[task.entry_file]
    changed = candidate.files.get(task.entry_file, original)
    return max(0, lines_changed(original, changed) - lines_changed(original, reference))


def pass_at_k(rows: list[dict[str, Any]], k: int) -> float:
    """Share of tasks solved within their first k candidates."""
    if not rows:
        return 0.0
    solved = sum(
        1 for r in rows if r["candidates_to_solve"] is not None and r["candidates_to_solve"] <= k
    )
    return solved / len(rows)


def pass_at_tokens(rows: list[dict[str, Any]]) -> list[tuple[int, float]]:
    """The pass@t curve: (token budget, repair rate) at every budget where it rises."""
    if not rows:
        return []
    costs = sorted(r["tokens_to_solve"] for r in rows if r["tokens_to_solve"] is not None)
    return [(cost, (i + 1) / len(rows)) for i, cost in enumerate(costs)]


def summarize(rows: Iterable[dict[str, Any]]) -> dict[str, Any]:
    rows = list(rows)
    total = len(rows)
    solved = sum(r["solved"] for r in rows)
    max_candidates = max((r["candidates"] for r in rows), default=0)
    tokens = sum(r["tokens"] for r in rows)
    return {
        "tasks": total,
        "solved": solved,
        "repair_rate": solved / total if total else 0.0,
        "pass@1": sum(r["first_passed"] for r in rows) / total if total else 0.0,
        "pass@k": {k: pass_at_k(rows, k) for k in range(1, max_candidates + 1)},
        "pass@t": pass_at_tokens(rows),
        "tokens": tokens,
        "tokens_per_solved": tokens / solved if solved else None,
        "sandbox_seconds": round(sum(r["sandbox_seconds"] for r in rows), 3),
        "wall_seconds": round(sum(r["wall_seconds"] for r in rows), 3),
        "reviewer_errors": sum(r["reviewer_errors"] for r in rows),
        # Rows written before replies' finish reasons were recorded have none to count.
        "truncated_replies": sum(r.get("truncated_replies", 0) for r in rows),
        "suspicious": sum(r.get("suspicious", 0) for r in rows),
        **over_editing(rows),
    }


def over_editing(rows: list[dict[str, Any]]) -> dict[str, float | None]:
    """The run's over-editing: the mean over solved tasks of their fix's lines beyond the
    reference, and the mean over every candidate; None where no task carries a reference."""
    solved = [
        r["lines_beyond_reference"] for r in rows if r.get("lines_beyond_reference") is not None
    ]
    measured = [
        r for r in rows if r.get("candidate_lines_beyond_reference") is not None and r["candidates"]
    ]
    candidates = sum(r["candidates"] for r in measured)
    return {
        "lines_beyond_reference": mean(solved) if solved else None,
        "candidate_lines_beyond_reference": (
            sum(r["candidate_lines_beyond_reference"] * r["candidates"] for r in measured)
            / candidates
            if candidates
            else None
        ),
    }
