"""Honest accounting: one result row per trajectory (`results.jsonl`) and the run's summary.

pass@1 is whether the first candidate passed; pass@k whether one of the first k did;
pass@t ("Demystifying GPT self-repair") is the repair rate against tokens spent: for each
token budget, the share of tasks solved by the time that many tokens were spent on them.
A row's `samples` (model replies) and `passed_candidates` are the n and c of the unbiased
pass@k estimator (selfrepair.stats) where the replies are independent samples (best-of-n).
"""

from __future__ import annotations

from typing import Any, Iterable

from selfrepair.types import Trajectory


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
    return {
        "task_id": trajectory.task.task_id,
        "trajectory_id": trajectory.trajectory_id,
        "strategy": trajectory.strategy,
        "model": trajectory.model,
        "outcome": trajectory.outcome,
        "solved": trajectory.solved,
        "first_passed": bool(candidates and candidates[0].report and candidates[0].report.passed),
        "candidates": len(candidates),
        "samples": sum(step.kind != "inputs" for step in trajectory.steps),  # model replies meant as fixes
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
        "error": trajectory.error,
    }


def pass_at_k(rows: list[dict[str, Any]], k: int) -> float:
    """Share of tasks solved within their first k candidates."""
    if not rows:
        return 0.0
    solved = sum(1 for r in rows if r["candidates_to_solve"] is not None and r["candidates_to_solve"] <= k)
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
    }
