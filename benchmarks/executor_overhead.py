"""What the Ray executor costs: tasks per minute, local against Ray, at 1 and 2 workers.

A worker is a task slot: `--jobs` threads for the local executor, `--jobs` slots of the one
node worker of a Ray instance started here (no dashboard, as many CPUs as this machine). The
model is the scripted backend, each QuixBugs task's own replies (a wrong program, a review,
the reference solution through the refine loop), so what is measured is the framework and
the executor, not a model. Every run repairs the tasks into a fresh run directory, as
`selfrepair bench` does.

The Ray executor moves two things at once: the work goes to another process, and a task's
checkpoints go to that process's memory, written to the run directory once when the task
lands, where the local executor writes each node's checkpoint to disk as it runs. To tell
the two apart, the Ray executor's own path (send, run over a checkpointer in memory, land) is
also timed in this process at 1 worker, without Ray: `ray_transport_ms_per_task` is what
Ray itself costs per task (pickling, scheduling, the round trip). On a busy machine the
noise of the test runs can hide a cost that small, so it is also measured alone:
`ray_round_trip_ms_per_task` sends each task to the worker and back with nothing to do.

Starting the node worker (its process, its warm sandbox pool) and a first run of two tasks
(the worker imports the graphs) are paid once per command; they are reported apart as
`ray_start_seconds` (Ray's own start, about as long again, is not in it), and the timed
runs come after. The overhead Ray adds per task (`ray_overhead_ms_per_task`) is the
difference of the two executors' wall time per task at the same number of workers. With
`--repeat N` each figure is the median of N runs, taken in rounds (every executor once per
round), so that a shared machine's changing load weighs on each alike. Prints one JSON line.

    python benchmarks/executor_overhead.py --data ../shared/benchmarks/quixbugs_python.jsonl
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import ray
from selfrepair.graphs.jobs import RepairJob, Rollout
from selfrepair.graphs.run import open_checkpointer
from selfrepair.sandbox.choose import open_sandbox

from selfrepair.executor.cluster import RayExecutor
from selfrepair.executor.core import Executor, Node
from selfrepair.executor.local import LocalExecutor
from selfrepair.loaders import load_quixbugs
from selfrepair.rundir import prepare_run_dir
from selfrepair.settings import Budget
from selfrepair.types import Task

WRONG = "```python\ndef {name}(*args, **kwargs):\n    return None\n```"
REVIEW = "VERDICT: refine\nCONFIDENCE: 0.9\nCRITIQUE: it returns None; implement the specification"
WORKERS = (1, 2)


def write_replies(tasks: list[Task], path: Path) -> str:
    replies = {
        f"def {t.entry_point}(": [
            WRONG.format(name=t.entry_point),
            REVIEW,
            f"```python\n{t.metadata['solution']}\n```",
        ]
        for t in tasks
    }
    path.write_text(json.dumps(replies))
    return f"scripted:{path}"


class InProcess:
    """The Ray executor's path for each task, in this process, one at a time, without Ray."""

    def __init__(self, node: Node) -> None:
        self.node = node

    def run(self, job, items, done):
        try:
            for item in items:
                result = job.finished(item) or job.land(item, job.remote(job.send(item), self.node))
                done(result)
                yield result
        finally:
            self.node.release_models()  # as the executors do after a run


@dataclass(frozen=True)
class Echo:
    """A job that does nothing but travel: the task goes to a worker and comes back. What
    its round trip costs is Ray's share of every task, measured where no test run's noise
    hides it."""

    model: str

    @property
    def remote(self) -> Callable[[Task, Node], Task]:
        return echo

    def finished(self, task: Task) -> None:
        return None

    def send(self, task: Task) -> Task:
        return task

    def land(self, task: Task, returned: Task) -> Task:
        return returned


def echo(task: Task, node: Node) -> Task:
    return task


def round_trip_ms(executor: RayExecutor, tasks: list[Task], model: str, rounds: int = 10) -> float:
    """Milliseconds per task that a round trip through `executor` adds over a call in this process."""
    many = tasks * rounds
    started = time.perf_counter()
    list(executor.run(Echo(model), many, lambda task: None))
    on_ray = time.perf_counter() - started
    started = time.perf_counter()
    for task in many:
        Echo(model).land(task, echo(Echo(model).send(task), None))
    here = time.perf_counter() - started
    return 1000 * (on_ray - here) / len(many)


def timed_run(executor: Executor | InProcess, tasks: list[Task], model: str, folder: Path) -> float:
    """Seconds to repair `tasks` into a fresh run directory; every task must be solved."""
    with tempfile.TemporaryDirectory(dir=folder) as run_dir:
        store = prepare_run_dir(Path(run_dir), {"benchmark": "executor_overhead"})
        checkpointer = open_checkpointer(Path(run_dir))
        job = RepairJob(Rollout("refine", model, Budget(max_candidates=4)), store, checkpointer)
        started = time.perf_counter()
        solved = sum(t.solved for t in executor.run(job, tasks, lambda trajectory: None))
        seconds = time.perf_counter() - started
        store.close()
        checkpointer.conn.close()
    if solved != len(tasks):
        raise SystemExit(
            f"only {solved} of {len(tasks)} tasks solved: the figures would not compare"
        )
    return seconds


def measure(tasks: list[Task], sandbox: str, repeat: int) -> tuple[dict, dict, float]:
    """Each executor's run times, how long each Ray executor took to start, and a task's
    round trip through Ray."""
    with (
        tempfile.TemporaryDirectory(prefix="selfrepair-executor-") as scratch,
        ExitStack() as stack,
    ):
        folder = Path(scratch)
        model = write_replies(tasks, folder / "replies.json")
        executors: dict[tuple[str, int], Executor | InProcess] = {}
        ray_start = {}
        for workers in WORKERS:
            executors["local", workers] = stack.enter_context(
                LocalExecutor(open_sandbox(sandbox, pool_size=workers), workers)
            )
            started = time.perf_counter()
            executors["ray", workers] = stack.enter_context(
                RayExecutor(None, sandbox=sandbox, jobs=workers)
            )
            timed_run(executors["ray", workers], tasks[:2], model, folder)
            ray_start[workers] = time.perf_counter() - started
        executors["in_process", 1] = InProcess(executors["local", 1].node)
        for executor in executors.values():
            timed_run(executor, tasks[:2], model, folder)  # the same warm-up for each
        # Round after round, every executor in turn: a machine whose load drifts weighs on all alike.
        runs: dict[tuple[str, int], list[float]] = {key: [] for key in executors}
        trips = []
        for _ in range(repeat):
            for key, executor in executors.items():
                runs[key].append(timed_run(executor, tasks, model, folder))
            trips.append(round_trip_ms(executors["ray", 1], tasks, model))
    return runs, ray_start, statistics.median(trips)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, required=True, help="QuixBugs JSONL (quixbugs_python.jsonl)"
    )
    parser.add_argument("--limit", type=int, default=40, help="how many tasks (default: all 40)")
    parser.add_argument(
        "--sandbox", default="docker", help="auto, docker or local (default docker)"
    )
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs per figure; figures are medians (default 3)"
    )
    args = parser.parse_args()

    tasks = load_quixbugs(args.data)[: args.limit]
    ray.init(
        address="local", include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING
    )
    try:
        runs, ray_start, round_trip = measure(tasks, args.sandbox, args.repeat)
    finally:
        ray.shutdown()
    seconds = {key: statistics.median(values) for key, values in runs.items()}

    def per_minute(key: tuple[str, int]) -> float:
        return round(60 * len(tasks) / seconds[key], 1)

    def ms_per_task(more: tuple[str, int], less: tuple[str, int]) -> float:
        return round(1000 * (seconds[more] - seconds[less]) / len(tasks), 1)

    print(
        json.dumps(
            {
                "benchmark": "executor_overhead",
                "tasks": len(tasks),
                "sandbox": args.sandbox,
                "runs": args.repeat,
                "tasks_per_minute": {
                    e: {str(w): per_minute((e, w)) for w in WORKERS} for e in ("local", "ray")
                },
                "in_process_tasks_per_minute": {"1": per_minute(("in_process", 1))},
                "ray_overhead_ms_per_task": {
                    str(w): ms_per_task(("ray", w), ("local", w)) for w in WORKERS
                },
                "ray_transport_ms_per_task": ms_per_task(("ray", 1), ("in_process", 1)),
                "ray_round_trip_ms_per_task": round(round_trip, 2),
                "ray_start_seconds": {str(w): round(ray_start[w], 1) for w in WORKERS},
            }
        )
    )


if __name__ == "__main__":
    main()
