"""Repair rollouts per minute, hf in process against vLLM's server, side by side: the same
model, the same QuixBugs tasks, best-of-n with n samples from one batched call per task,
every sample tested in the sandbox. Prints one JSON line.

A rollout is one sampled repair (a step of the trajectory: the reply, its candidate, its test
run). Per minute counts the repair loop's wall time only; starting each engine (loading the
model; for vLLM its server, and its environment the first time) is reported apart. The two
engines take the tasks in turn, so that on a shared machine both see the same load; hf runs
on one torch thread, as vLLM's CPU build computes on one core of a two-core machine (it
keeps the other for its server).

    nice -n 15 python benchmarks/engine_throughput.py --data ../shared/benchmarks/quixbugs_python.jsonl

On a CPU this takes most of an hour for the 20 tasks (SmolLM2, n=8).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from selfrepair.agents.models.backends import load_model
from selfrepair.agents.models.smollm2 import ensure_smollm2
from selfrepair.graphs.run import repair_task
from selfrepair.sandbox.choose import open_sandbox

from selfrepair.loaders import load_quixbugs
from selfrepair.settings import Budget, Sampling
from selfrepair.store import TrajectoryStore


def figures(startup: float, trajectories: list, wall: float) -> dict:
    rollouts = sum(len(t.steps) for t in trajectories)
    completion_tokens = sum(s.completion_tokens for t in trajectories for s in t.steps)
    model_seconds = sum(s.model_seconds for t in trajectories for s in t.steps)
    return {
        "startup_seconds": round(startup, 1),
        "wall_seconds": round(wall, 1),
        "rollouts": rollouts,
        "rollouts_per_minute": round(rollouts / (wall / 60), 2),
        "completion_tokens": completion_tokens,
        "completion_tokens_per_second": round(completion_tokens / model_seconds, 1),
        "solved": sum(t.solved for t in trajectories),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, required=True, help="QuixBugs JSONL (quixbugs_python.jsonl)"
    )
    parser.add_argument("--limit", type=int, default=20, help="the first N tasks (default 20)")
    parser.add_argument(
        "--samples",
        type=int,
        default=8,
        help="best-of-n: samples per task, one batched call (default 8)",
    )
    parser.add_argument(
        "--reply-tokens", type=int, default=Sampling().max_tokens, help="longest reply in tokens"
    )
    parser.add_argument(
        "--hf-threads",
        type=int,
        default=1,
        help="torch threads for hf (vLLM computes on one core of two)",
    )
    parser.add_argument("--sandbox", default="auto", help="auto, docker or local")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.hf_threads)
    folder = ensure_smollm2()
    tasks = load_quixbugs(args.data)[: args.limit]
    engines = {"hf": f"hf:{folder}", "vllm": f"vllm:{folder}"}
    models, startup = {}, {}
    for engine, spec in engines.items():
        started = time.perf_counter()
        models[engine] = load_model(spec)
        startup[engine] = time.perf_counter() - started
    sandbox = open_sandbox(args.sandbox)
    trajectories: dict[str, list] = {engine: [] for engine in engines}
    wall = dict.fromkeys(engines, 0.0)
    try:
        with tempfile.TemporaryDirectory() as run_dir, TrajectoryStore(Path(run_dir)) as store:
            # Task by task, one engine after the other: on a shared machine both see the same load.
            for task in tasks:
                for engine, model in models.items():
                    started = time.perf_counter()
                    trajectory = repair_task(
                        task,
                        model,
                        sandbox,
                        "best-of-n",
                        Budget(max_candidates=args.samples),
                        store,
                        sampling=Sampling(samples=args.samples, max_tokens=args.reply_tokens),
                    )
                    wall[engine] += time.perf_counter() - started
                    trajectories[engine].append(trajectory)
                    print(
                        f"[{engine:4} {wall[engine]:6.0f}s] {task.task_id}: {trajectory.outcome}, "
                        f"{len(trajectory.steps)} rollouts, {trajectory.tokens} tokens",
                        file=sys.stderr,
                        flush=True,
                    )
    finally:
        sandbox.close()
    result = {
        "model": "SmolLM2-135M-Instruct",
        "tasks": len(tasks),
        "samples": args.samples,
        "reply_tokens": args.reply_tokens,
        "hf_threads": args.hf_threads,
    }
    for engine in engines:
        result[engine] = figures(startup[engine], trajectories[engine], wall[engine])
    result["vllm_over_hf"] = round(
        result["vllm"]["rollouts_per_minute"] / result["hf"]["rollouts_per_minute"], 2
    )
    print(json.dumps(result))


# vLLM's workers are spawned processes, which import the main module: the guard keeps them
# from running the benchmark again.
if __name__ == "__main__":
    main()
