"""Repair rate on QuixBugs, same tasks and same model: single-shot vs the refine loop vs
best-of-n at one candidate budget, with the tokens each spent. Prints one JSON line.

Single-shot is one greedy candidate with no feedback: exactly the refine loop's first
candidate (same prompt, greedy), so it is read off the refine runs instead of paid for twice.

The model is any spec; `--gguf FILE` converts a GGUF file once (into the selfrepair cache) to
a plain folder and loads it with the `hf` backend, e.g. the code model that
`../shared/tools/code-model` fetches (Qwen2.5-Coder-0.5B-Instruct):

    python benchmarks/repair_rate.py --data ../shared/benchmarks/quixbugs_python.jsonl \\
        --gguf "$(../shared/tools/code-model)" --limit 3

Slow on a CPU (minutes per task); --limit picks the first N tasks.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from selfrepair.agents.models.backends import load_model
from selfrepair.graphs.run import repair_task
from selfrepair.sandbox.choose import open_sandbox

from selfrepair.config import models_dir
from selfrepair.loaders import load_quixbugs
from selfrepair.settings import Budget, Sampling
from selfrepair.types import Trajectory


def converted(gguf: Path) -> Path:
    """A plain transformers folder for a GGUF file, made once."""
    from selfrepair.agents.models.smollm2 import convert_gguf

    folder = models_dir() / gguf.stem
    if not (folder / "config.json").exists():
        convert_gguf(gguf, folder)
    return folder


def figures(trajectories: list[Trajectory]) -> dict:
    return {
        "solved": sum(t.solved for t in trajectories),
        "solved_tasks": [t.task.task_id for t in trajectories if t.solved],
        "candidates": sum(len(t.steps) for t in trajectories),
        "tokens": sum(t.tokens for t in trajectories),
        "model_seconds": round(sum(s.model_seconds for t in trajectories for s in t.steps), 1),
        "wall_seconds": round(sum(t.wall_seconds for t in trajectories), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, required=True, help="QuixBugs JSONL (quixbugs_python.jsonl)"
    )
    parser.add_argument("--model", default="smollm2", help="model spec (ignored with --gguf)")
    parser.add_argument(
        "--gguf", type=Path, help="a GGUF model file, converted once and loaded with hf"
    )
    parser.add_argument("--limit", type=int, default=3, help="the first N tasks (default 3)")
    parser.add_argument("--budget", type=int, default=8, help="candidates per task (default 8)")
    parser.add_argument("--sandbox", default="auto", help="auto, docker or local")
    args = parser.parse_args()

    spec = f"hf:{converted(args.gguf)}" if args.gguf else args.model
    model = load_model(spec)
    tasks = load_quixbugs(args.data)[: args.limit]
    sandbox = open_sandbox(args.sandbox)
    budget = Budget(max_candidates=args.budget)
    started = time.perf_counter()

    def run(task, strategy: str, **options) -> Trajectory:
        # Progress on stderr: on a CPU one task can take many minutes.
        trajectory = repair_task(task, model, sandbox, strategy, budget, **options)
        print(
            f"[{time.perf_counter() - started:7.0f}s] {strategy} {task.task_id}: {trajectory.outcome}, "
            f"{len(trajectory.candidates)} candidates, {trajectory.tokens} tokens",
            file=sys.stderr,
            flush=True,
        )
        return trajectory

    try:
        refine = [run(task, "refine") for task in tasks]
        best_of_n = [
            run(task, "best-of-n", sampling=Sampling(samples=args.budget)) for task in tasks
        ]
    finally:
        sandbox.close()
    # Single-shot is the refine loop's first (greedy) candidate alone, with its own cost.
    single_shot = [
        t.model_copy(
            update={
                "steps": t.steps[:1],
                "wall_seconds": sum(s.model_seconds + s.sandbox_seconds for s in t.steps[:1]),
            }
        )
        for t in refine
    ]
    for trajectory in single_shot:
        first = trajectory.steps[0] if trajectory.steps else None
        trajectory.outcome = (
            "solved" if first and first.report and first.report.passed else "failed"
        )
    print(
        json.dumps(
            {
                "benchmark": "repair_rate",
                "data": "quixbugs",
                "tasks": [t.task_id for t in tasks],
                "model": spec,
                "budget": args.budget,
                "sandbox": sandbox.name,
                "single_shot": figures(single_shot),
                "refine": figures(refine),
                "best_of_n": figures(best_of_n),
                "reviewer_errors": sum(
                    s.reviewer_error for t in refine + best_of_n for s in t.steps
                ),
                "errors": [t.error for t in refine + best_of_n if t.outcome == "error"],
                "wall_seconds": round(time.perf_counter() - started, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
