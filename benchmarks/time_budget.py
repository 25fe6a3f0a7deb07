"""How far past `--max-seconds` a task runs when its model call is still running at the end.

`selfrepair fix` on examples/buggy_add (local sandbox, refine) with a scripted model whose
every reply takes `--slow` seconds (600 by default, far past any budget), once per budget in
`--budgets`. For each: the task's wall seconds as recorded (`task_seconds`; the budget binds
this), how far past the budget that is (`over_budget_seconds`), the stop reason, and the
whole command's wall time (`command_seconds`: start-up and the preflight test run, which the
budget does not cover, included). Prints one JSON line.

    python benchmarks/time_budget.py --budgets 10 30
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from selfrepair.store import TrajectoryStore

ROOT = Path(__file__).resolve().parent.parent
REPLY = "```python\ndef add(a, b):\n    return a + b\n```"


def measure(budget: float, slow: float, work: Path) -> dict:
    folder = work / f"budget-{budget:g}"
    shutil.copytree(ROOT / "examples" / "buggy_add", folder / "buggy_add")
    replies = folder / "slow.json"
    replies.write_text(json.dumps([{"reply": REPLY, "seconds": slow}] * 8))
    command = [
        str(Path(sys.executable).parent / "selfrepair"),
        "fix",
        str(folder / "buggy_add" / "calc.py"),
        "--test-cmd",
        "python -m pytest -q",
        "--model",
        f"scripted:{replies}",
        "--sandbox",
        "local",
        "--strategy",
        "refine",
        "--max-seconds",
        f"{budget:g}",
        "--out",
        str(folder / "run"),
        "--quiet",
    ]
    started = time.monotonic()
    subprocess.run(command, capture_output=True, text=True, timeout=slow + 300)
    command_seconds = time.monotonic() - started
    with TrajectoryStore(folder / "run", create=False) as store:
        [trajectory] = store.trajectories()
    return {
        "budget_seconds": budget,
        "task_seconds": round(trajectory.wall_seconds, 3),
        "over_budget_seconds": round(trajectory.wall_seconds - budget, 3),
        "stop_reason": trajectory.metadata.get("stop_reason", trajectory.error),
        "command_seconds": round(command_seconds, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", type=float, nargs="+", default=[10.0, 30.0])
    parser.add_argument("--slow", type=float, default=600.0, help="seconds each reply takes")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        runs = [measure(budget, args.slow, Path(work)) for budget in args.budgets]
    print(json.dumps({"slow_reply_seconds": args.slow, "runs": runs}))


if __name__ == "__main__":
    main()
