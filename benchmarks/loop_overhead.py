"""The framework's own overhead: the share of a repair run's wall time that is neither the
model nor test execution.

The model is the scripted backend (its replies cost next to nothing), so what remains is
LangGraph, the SQLite checkpointer and trajectory store, prompt rendering, code extraction
and the run directory's bookkeeping. Each QuixBugs task gets a wrong candidate, a review and
the reference solution through the refine loop, driven the way `selfrepair bench --json`
drives it: a run directory made (`prepare_run_dir`), the repair job on the local executor
(one task at a time), checkpointed with durability "async", every step saved to the store,
each task's row added to results.jsonl as it finishes (`ResultsWriter`: summary.json
follows every few seconds and at the end), the store closed at the end.

What counts as what:
  model seconds   each model call, as the model backend measures it
  test seconds    each sandbox call (`run_tests`) as the host sees it: laying out the
                  workspace, the test process and the cleanup. Of that, the test process
                  alone is reported too (`test_process_seconds`), so the sandbox's own
                  setup is visible; it is the sandbox's cost, not the loop's.
  overhead        everything else from making the run directory (its lock, its store, the
                  checkpointer) to closing the store after the last task: per task, the
                  check for a checkpoint to resume from, LangGraph's start and steps, the
                  checkpoint and store writes (and waiting for them at the task's end),
                  prompts, extraction, review parsing and the results files (summary.json
                  at the end included). Of that, making the run directory and closing its
                  store, once per run, is reported
                  too (`open_close_seconds`: SQLite creating its WAL file and folding it
                  back into the store on close, each with an fsync).
  left out        what happens once per process before the run: loading the model (the
                  scripted one reads a file) and starting the sandbox (its warm pool;
                  benchmarks/sandbox_overhead.py measures the sandbox), and bench's progress
                  bar on a terminal (`--json` and `--quiet` have none).

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

from selfrepair.graphs.jobs import RepairJob, Rollout
from selfrepair.graphs.run import open_checkpointer
from selfrepair.sandbox.choose import open_sandbox

from selfrepair.executor.local import LocalExecutor
from selfrepair.loaders import load_quixbugs
from selfrepair.metrics import result_row
from selfrepair.rundir import ResultsWriter, prepare_run_dir
from selfrepair.settings import Budget
from selfrepair.types import Task

WRONG = "```python\ndef {name}(*args, **kwargs):\n    return None\n```"
REVIEW = "VERDICT: refine\nCONFIDENCE: 0.9\nCRITIQUE: it returns None; implement the specification"


def measure(tasks: list[Task], executor: LocalExecutor) -> dict:
    """One run over `tasks` in a fresh run directory."""
    with tempfile.TemporaryDirectory(prefix="selfrepair-overhead-") as folder:
        replies = []
        for task in tasks:
            replies += [
                WRONG.format(name=task.entry_point),
                REVIEW,
                f"```python\n{task.metadata['solution']}\n```",
            ]
        (Path(folder) / "replies.json").write_text(json.dumps(replies))
        model = f"scripted:{Path(folder) / 'replies.json'}"
        executor.load(model)
        rollout = Rollout("refine", model, Budget(max_candidates=4))
        run_dir = Path(folder) / "run"
        config = {"command": "loop_overhead", "model": model, "tasks": len(tasks)}
        started = time.perf_counter()
        store = prepare_run_dir(run_dir, config)
        job = RepairJob(rollout, store, open_checkpointer(store))
        opened = time.perf_counter()
        trajectories, results = [], ResultsWriter(run_dir, config)
        for trajectory in executor.run(job, tasks, lambda _: None):
            trajectories.append(trajectory)
            results.add(result_row(trajectory))
        results.close()
        last_task_done = time.perf_counter()
        store.close()
        wall = time.perf_counter() - started
        open_close = wall - (last_task_done - opened)

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
        "open_close_seconds": open_close,
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
    with LocalExecutor(open_sandbox(args.sandbox)) as executor:
        runs = [measure(tasks, executor) for _ in range(args.repeat)]
    figures = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
    print(
        json.dumps(
            {
                "benchmark": "loop_overhead",
                "tasks": len(tasks),
                "sandbox": executor.node.sandbox.name,
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
