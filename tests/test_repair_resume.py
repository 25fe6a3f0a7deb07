"""A bench run killed with SIGKILL resumes when the same command runs again: finished tasks
are not redone, and the cut-off task keeps its steps and goes on from where it stood."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from selfrepair.types import Trajectory

SELFREPAIR = str(Path(sys.executable).parent / "selfrepair")


def stored(run_dir: Path) -> dict[str, Trajectory]:
    if not (run_dir / "run.sqlite").exists():
        return {}
    with sqlite3.connect(run_dir / "run.sqlite", timeout=30) as connection:
        try:
            rows = connection.execute("SELECT task_id, body FROM trajectories").fetchall()
        except sqlite3.OperationalError:  # the tables are not made yet
            return {}
    return {task_id: Trajectory.model_validate_json(body) for task_id, body in rows}


def test_a_killed_bench_resumes_without_redoing_or_losing_steps(tmp_path):
    records = [
        {"name": name, "buggy_program": f"def {name}(a, b):\n    return a - b\n", "docstring": "Add a and b.",
         "solution": f"def {name}(a, b):\n    return a + b\n", "tests": f"assert {name}(1, 2) == 3\n"}
        for name in ("plus", "total")
    ]  # fmt: skip
    data = tmp_path / "quixbugs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in records))
    # The second task's first candidate sleeps inside its test run; once that task is stored,
    # the test sees the run's worker process (by then the step before it is checkpointed) and
    # kills the bench.
    slow = "```python\ndef total(a, b):\n    import time\n    time.sleep(600)\n    return a - b\n```"
    replies = tmp_path / "replies.json"
    replies.write_text(json.dumps(["```python\ndef plus(a, b):\n    return a + b\n```", slow]))
    run_dir = tmp_path / "run"
    command = [
        SELFREPAIR, "bench", "quixbugs", "--data", str(data), "--model", f"scripted:{replies}",
        "--strategy", "refine", "--budget", "4", "--sandbox", "local", "--out", str(run_dir), "--quiet",
    ]  # fmt: skip

    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        while not ("quixbugs/total" in stored(run_dir) and _sleeping_candidate_runs()):
            assert process.poll() is None, process.communicate()
            time.sleep(0.05)
    finally:
        process.kill()  # SIGKILL: no cleanup, no last save (the sandbox dies with its parent)
        process.wait()
    before = stored(run_dir)
    cut = before["quixbugs/total"]
    assert before["quixbugs/plus"].solved
    assert len(cut.steps) == 1 and cut.steps[0].report is None  # killed inside the test run

    # The same command again; the model now has the rest of its replies.
    replies.write_text(json.dumps(["VERDICT: refine\nCONFIDENCE: 0.9\nCRITIQUE: it subtracts",
                                   "```python\ndef total(a, b):\n    return a + b\n```"]))  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "2/2 solved" in result.stdout

    after = stored(run_dir)
    assert after["quixbugs/plus"] == before["quixbugs/plus"]  # finished: not redone
    resumed = after["quixbugs/total"]
    assert resumed.trajectory_id == cut.trajectory_id
    assert resumed.steps[0].completion == cut.steps[0].completion  # the step from before the kill
    assert [s.kind for s in resumed.steps] == ["solve", "refine"] and resumed.solved
    assert resumed.steps[0].report is not None and not resumed.steps[0].report.passed
    rows = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
    assert [r["solved"] for r in rows] == [True, True]


def _sleeping_candidate_runs() -> bool:
    """A sandbox worker is running `total`'s candidate (its own process, seen from the host)."""
    for entry in Path("/proc").iterdir():
        try:
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if b"selfrepair_harness import worker" in command:
            return True
    return False
