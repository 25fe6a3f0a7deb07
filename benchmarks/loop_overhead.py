"""The framework's own overhead: the share of a repair run's wall time that is neither the
model nor test execution.

The model is the scripted backend (its replies cost next to nothing), so what remains besides
the tests is LangGraph, the SQLite checkpointer and trajectory store, prompt rendering, code
extraction and the sandbox's own setup. Each QuixBugs task gets a wrong candidate, a review and
the reference solution through the refine loop, exactly as `selfrepair bench` runs it (with
checkpointing and the store). Prints one JSON line.

    python benchmarks/loop_overhead.py --data ../shared/benchmarks/quixbugs_python.jsonl --limit 10
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from selfrepair.agents.models import load_model
from selfrepair.graphs.budget import Budget
from selfrepair.graphs.run import open_checkpointer, repair_task
from selfrepair.loaders import load_quixbugs
from selfrepair.sandbox.choose import open_sandbox
from selfrepair.training.store import TrajectoryStore

WRONG = "```python\ndef {name}(*args, **kwargs):\n    return None\n```"
REVIEW = "VERDICT: refine\nCONFIDENCE: 0.9\nCRITIQUE: it returns None; implement the specification"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="QuixBugs JSONL (quixbugs_python.jsonl)")
    parser.add_argument("--limit", type=int, default=10, help="how many tasks (default 10)")
    parser.add_argument("--sandbox", default="local", help="auto, docker or local (default local)")
    args = parser.parse_args()

    tasks = load_quixbugs(args.data)[: args.limit]
    with tempfile.TemporaryDirectory(prefix="selfrepair-overhead-") as folder:
        run_dir = Path(folder)
        replies = []
        for task in tasks:
            replies += [WRONG.format(name=task.entry_point), REVIEW, f"```python\n{task.metadata['solution']}\n```"]
        (run_dir / "replies.json").write_text(json.dumps(replies))
        model = load_model(f"scripted:{run_dir / 'replies.json'}")
        sandbox = open_sandbox(args.sandbox)
        store = TrajectoryStore(run_dir)
        checkpointer = open_checkpointer(run_dir)
        started = time.perf_counter()
        trajectories = [
            repair_task(task, model, sandbox, "refine", Budget(max_candidates=4), store, checkpointer=checkpointer)
            for task in tasks
        ]
        wall = time.perf_counter() - started
        sandbox.close()
        store.close()

    model_seconds = sum(s.model_seconds for t in trajectories for s in t.steps)
    test_seconds = sum(t.sandbox_seconds for t in trajectories)
    overhead = wall - model_seconds - test_seconds
    print(
        json.dumps(
            {
                "benchmark": "loop_overhead",
                "tasks": len(tasks),
                "solved": sum(t.solved for t in trajectories),
                "candidates": sum(len(t.candidates) for t in trajectories),
                "sandbox": sandbox.name,
                "wall_seconds": round(wall, 3),
                "model_seconds": round(model_seconds, 3),
                "test_seconds": round(test_seconds, 3),
                "overhead_seconds": round(overhead, 3),
                "overhead_share": round(overhead / wall, 4),
                "overhead_per_candidate_ms": round(1000 * overhead / max(1, sum(len(t.candidates) for t in trajectories)), 2),
            }
        )
    )


if __name__ == "__main__":
    main()
