"""What a run directory is, and the one way to make, resume and write it.

    RUN_DIR/run.sqlite        trajectories (selfrepair.store) and LangGraph's checkpoints
    RUN_DIR/results.jsonl     one `metrics.result_row` per finished task
    RUN_DIR/summary.json      the summary of those rows, and the run's configuration
    RUN_DIR/fix.patch         `fix`: the fix as a unified diff
    RUN_DIR/predictions.jsonl `bench swebench`: predictions for SWE-bench's harness

A run directory belongs to one configuration, recorded in its store when it is made. Giving
it again resumes that run; a run of other settings there is refused rather than mixed in.
results.jsonl and summary.json are rewritten whole after every finished task, atomically, so
a reader (`report`, a killed run's user) never sees half a file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from selfrepair.errors import SelfRepairError
from selfrepair.metrics import result_row, summarize
from selfrepair.store import STORE_NAME, TrajectoryStore, store_path
from selfrepair.types import Trajectory

RESULTS = "results.jsonl"
SUMMARY = "summary.json"
PATCH = "fix.patch"
PREDICTIONS = "predictions.jsonl"
FILES = (STORE_NAME, RESULTS, SUMMARY)  # what every finished run directory holds
CONFIG_KEY = "run_config"  # where the store keeps the run's configuration


def prepare_run_dir(run_dir: Path, config: dict[str, Any]) -> TrajectoryStore:
    """Create the run directory, or reopen it to resume when it holds a run of the same
    configuration; a different run there is refused rather than mixed in."""
    if run_dir.exists() and not run_dir.is_dir():
        raise SelfRepairError(f"--out {run_dir} is a file, not a directory")
    if run_dir.is_dir() and any(run_dir.iterdir()):
        if not store_path(run_dir).exists():
            raise SelfRepairError(f"--out {run_dir} is not empty and is not a run directory")
        store = TrajectoryStore(run_dir, create=False)
        recorded = json.loads(store.get_meta(CONFIG_KEY) or "{}")
        if recorded != config:
            store.close()
            different = sorted(k for k in set(recorded) | set(config) if recorded.get(k) != config.get(k))
            raise SelfRepairError(
                f"{run_dir} holds a run with other settings ({', '.join(different)}); "
                "choose another --out to start a new run"
            )
        return store
    run_dir.mkdir(parents=True, exist_ok=True)
    store = TrajectoryStore(run_dir)
    store.set_meta(CONFIG_KEY, json.dumps(config, sort_keys=True))
    return store


def write_atomically(path: Path, text: str) -> None:
    """Write beside `path` and rename into place: readers see the old file or the new one."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(path)


def write_results(run_dir: Path, trajectories: list[Trajectory], config: dict[str, Any]) -> dict[str, Any]:
    """results.jsonl and summary.json for the finished trajectories; returns the summary."""
    rows = [result_row(t) for t in trajectories]
    write_atomically(run_dir / RESULTS, "".join(json.dumps(row) + "\n" for row in rows))
    summary = summarize(rows) | {"errors": sum(r["outcome"] == "error" for r in rows), "config": config}
    write_atomically(run_dir / SUMMARY, json.dumps(summary, indent=2) + "\n")
    return summary


def read_results(run_dir: Path) -> list[dict[str, Any]]:
    """The rows of a run directory's results.jsonl (none when it has no such file yet)."""
    path = run_dir / RESULTS
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
