"""What a run directory's store holds, read as another process sees it mid-run."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from selfrepair.types import Trajectory


def stored(run_dir: Path) -> dict[str, Trajectory]:
    if not (run_dir / "run.sqlite").exists():
        return {}
    with sqlite3.connect(run_dir / "run.sqlite", timeout=30) as connection:
        try:
            rows = connection.execute("SELECT task_id, body FROM trajectories").fetchall()
        except sqlite3.OperationalError:  # the tables are not made yet
            return {}
    return {task_id: Trajectory.model_validate_json(body) for task_id, body in rows}


def reviewed(trajectory: Trajectory | None) -> bool:
    return (
        trajectory is not None and bool(trajectory.steps) and trajectory.steps[0].review is not None
    )
