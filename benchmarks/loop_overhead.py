"""The framework's own overhead: the share of a repair run's wall time that is neither the
model nor test execution.

The model is the scripted backend (its replies cost next to nothing), so what remains is
LangGraph, the SQLite checkpointer and trajectory store, prompt rendering and code
extraction. Each QuixBugs task gets a wrong candidate, a review and the reference solution
through the refine loop, exactly as `selfrepair bench` runs it (checkpointed with
durability "sync", every step saved to the store).

What counts as what:
  model seconds   each model call, as the model backend measures it
  test seconds    each sandbox call (`run_tests`) as the host sees it: laying out the
                  workspace, the test process and the cleanup. Of that, the test process
                  alone is reported too (`test_process_seconds`), so the sandbox's own
                  setup is visible; it is the sandbox's cost, not the loop's.
  overhead        the rest of the wall time, from opening the run's store and checkpointer
                  to the last task's end.

With `--repeat N` the run is made N times and the figures are medians (the machines are
shared and noisy). Prints one JSON line.

    python benchmarks/loop_overhead.py --data ../shared/benchmarks/quixbugs_python.jsonl --limit 20
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from selfrepair.agents.models.backends import load_model
from selfrepair.graphs.run import open_checkpointer, repair_task
from selfrepair.sandbox.choose import open_sandbox
from selfrepair.sandbox.core import Sandbox

from selfrepair.loaders import load_quixbugs
from selfrepair.settings import Budget
from selfrepair.store import TrajectoryStore
from selfrepair.types import Task

WRONG = "```python\ndef {name}(*args, **kwargs):\n    return None\n```"
REVIEW = "VERDICT: refine\nCONFIDENCE: 0.9\nCRITIQUE: it returns None; implement the specification"


def measure(tasks: list[Task], sandbox: Sandbox) -> dict:
    """One run over `tasks` in a fresh run directory."""
    with tempfile.TemporaryDirectory(prefix="selfrepair-overhead-") as folder:
        run_dir = Path(folder)
        replies = []
        for task in tasks:
            replies += [
                WRONG.format(name=task.entry_point),
                REVIEW,
                f"```python\n{task.metadata['solution']}\n```",
            ]
        (run_dir / "replies.json").write_text(json.dumps(replies))
        model = load_model(f"scripted:{run_dir / 'replies.json'}")
        started = time.perf_counter()
        store = TrajectoryStore(run_dir)
        checkpointer = open_checkpointer(run_dir)
        trajectories = [
            repair_task(
                task,
                model,
                sandbox,
                "refine",
                Budget(max_candidates=4),
                store,
                checkpointer=checkpointer,
            )
            for task in tasks
        ]
        wall = time.perf_counter() - started
        store.close()
        checkpointer.conn.close()

    steps = [s for t in trajectories for s in t.steps]
    model_seconds = sum(s.model_seconds for s in steps)
    test_seconds = sum(s.sandbox_seconds for s in steps)
    overhead = wall - model_seconds - test_seconds
    candidates = sum(len(t.candidates) for t in trajectories)
    return {
        "solved": sum(t.solved for t in trajectories),
        "candidates": candidates,
        "wall_seconds": wall,
        "model_seconds": model_seconds,
        "test_seconds": test_seconds,
        "test_process_seconds": sum(s.report.wall_seconds for s in steps if s.report is not None),
        "overhead_seconds": overhead,
        "overhead_share": overhead / wall,
        "overhead_per_candidate_ms": 1000 * overhead / max(1, candidates),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, required=True, help="QuixBugs JSONL (quixbugs_python.jsonl)"
    )
    parser.add_argument("--limit", type=int, default=10, help="how many tasks (default 10)")
    parser.add_argument("--sandbox", default="local", help="auto, docker or local (default local)")
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs to make; figures are their medians (default 1)"
    )
    args = parser.parse_args()

    tasks = load_quixbugs(args.data)[: args.limit]
    sandbox = open_sandbox(args.sandbox)
    try:
        runs = [measure(tasks, sandbox) for _ in range(args.repeat)]
    finally:
        sandbox.close()
    figures = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
    print(
        json.dumps(
            {
                "benchmark": "loop_overhead",
                "tasks": len(tasks),
                "sandbox": sandbox.name,
                "runs": len(runs),
            }
            | {
                key: round(value, 4) if isinstance(value, float) else value
                for key, value in figures.items()
            }
        )
    )


if __name__ == "__main__":
    main()
