"""Sandbox overhead on QuixBugs: each reference solution + its tests, once in the sandbox
(through run_tests, every isolation on) and once as a bare `python` process on the host,
side by side (alternating, so both see the same machine load). Prints one JSON line.

    python benchmarks/sandbox_overhead.py ../shared/benchmarks/quixbugs_python.jsonl [--sandbox auto]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from selfrepair.sandbox.choose import open_sandbox
from selfrepair.sandbox.testing import run_tests
from tqdm import tqdm

from selfrepair.types import Candidate, Task, TestSpec

TIMEOUT_S = 30.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "data", type=Path, help="quixbugs_python.jsonl (from ../shared/benchmarks/)"
    )
    parser.add_argument(
        "--sandbox",
        default="auto",
        choices=["auto", "docker", "local"],
        help="which sandbox to measure",
    )
    parser.add_argument(
        "--pool-size", type=int, default=None, help="warm containers in the Docker pool"
    )
    args = parser.parse_args()
    if not args.data.is_file():
        sys.exit(f"sandbox_overhead: no such file: {args.data}")
    rows = [json.loads(line) for line in args.data.read_text().splitlines() if line.strip()]

    sandbox = open_sandbox(args.sandbox, pool_size=args.pool_size)
    bare_seconds = sandbox_seconds = 0.0
    bare_passed = sandbox_passed = 0
    times: dict[str, list[float]] = {"bare": [], "sandbox": []}
    with tempfile.TemporaryDirectory(prefix="selfrepair-bench-") as folder:
        for index, row in enumerate(tqdm(rows, desc="quixbugs", file=sys.stderr)):
            task, candidate = task_of(row)
            script = Path(folder) / f"{row['name']}.py"
            script.write_text(row["solution"] + "\n\n" + row["tests"])

            def bare(script: Path = script) -> bool:
                done = subprocess.run(
                    [sys.executable, str(script)],
                    capture_output=True,
                    timeout=TIMEOUT_S,
                    cwd=folder,
                )
                return done.returncode == 0

            def boxed(task=task, candidate=candidate) -> bool:
                return run_tests(sandbox, task, candidate).passed

            # Alternate which goes first so neither always gets the warmer caches.
            order = [("bare", bare), ("sandbox", boxed)]
            for name, run in order if index % 2 == 0 else order[::-1]:
                started = time.perf_counter()
                passed = run()
                seconds = time.perf_counter() - started
                times[name].append(seconds)
                if name == "bare":
                    bare_seconds += seconds
                    bare_passed += passed
                else:
                    sandbox_seconds += seconds
                    sandbox_passed += passed
    pool_size = getattr(sandbox, "pool_size", None)
    sandbox.close()
    print(
        json.dumps(
            {
                "tasks": len(rows),
                "sandbox": sandbox.name,
                "pool_size": pool_size,
                "bare_runs_per_s": round(len(rows) / bare_seconds, 2),
                "sandbox_runs_per_s": round(len(rows) / sandbox_seconds, 2),
                "ratio_sandbox_to_bare": round(sandbox_seconds / bare_seconds, 3),
                "bare_ms_per_task": round(1000 * bare_seconds / len(rows), 1),
                "sandbox_ms_per_task": round(1000 * sandbox_seconds / len(rows), 1),
                # Medians: levenshtein's ~3 s dominates the totals on both sides.
                "bare_median_ms": round(1000 * statistics.median(times["bare"]), 1),
                "sandbox_median_ms": round(1000 * statistics.median(times["sandbox"]), 1),
                "median_ratio_sandbox_to_bare": round(
                    statistics.median(times["sandbox"]) / statistics.median(times["bare"]), 3
                ),
                "bare_passed": bare_passed,
                "sandbox_passed": sandbox_passed,
            }
        )
    )


def task_of(row: dict) -> tuple[Task, Candidate]:
    name = row["name"]
    task = Task(
        task_id=name,
        spec=row["docstring"],
        files={f"{name}.py": row["buggy_program"]},
        entry_file=f"{name}.py",
        tests=TestSpec(kind="script", files={f"test_{name}.py": row["tests"]}, timeout_s=TIMEOUT_S),
    )
    return task, Candidate(files={f"{name}.py": row["solution"]})


if __name__ == "__main__":
    main()
