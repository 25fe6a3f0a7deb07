"""`selfrepair fix`, `bench` and `export` as a user runs them: the installed command, in a
subprocess, with the scripted model and the local sandbox."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from selfrepair.settings import Sampling
from selfrepair.store import TrajectoryStore

ROOT = Path(__file__).resolve().parent.parent
SELFREPAIR = str(Path(sys.executable).parent / "selfrepair")
TEST_CMD = "python -m pytest -q"
GOOD = "```python\ndef add(a, b):\n    return a + b\n```"
WRONG = "```python\ndef add(a, b):\n    return a * b\n```"


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([SELFREPAIR, *args], capture_output=True, text=True, cwd=cwd, timeout=300)


@pytest.fixture
def example(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "examples" / "buggy_add", tmp_path / "buggy_add")
    return tmp_path / "buggy_add"


def replies(tmp_path: Path, *texts: str) -> str:
    path = tmp_path / "replies.json"
    path.write_text(json.dumps(list(texts)))
    return f"scripted:{path}"


def quixbugs_file(tmp_path: Path, names: list[str]) -> Path:
    lines = []
    for name in names:
        record = {
            "name": name,
            "buggy_program": f"def {name}(a, b):\n    return a - b\n",
            "docstring": "Return the sum of a and b.",
            "solution": f"def {name}(a, b):\n    return a + b\n",
            "tests": f"assert {name}(1, 2) == 3\n",
        }
        lines.append(json.dumps(record))
    path = tmp_path / "quixbugs.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def fixed(name: str) -> str:
    return f"```python\ndef {name}(a, b):\n    return a + b\n```"


def test_fix_writes_the_repaired_file_and_exits_0(example, tmp_path):
    result = run(
        "fix",
        str(example / "calc.py"),
        "--test-cmd",
        TEST_CMD,
        "--model",
        replies(tmp_path, WRONG, GOOD),
        "--sandbox",
        "local",
        "--strategy",
        "best-of-n",
        "--budget",
        "2",
        "--out",
        str(tmp_path / "run"),
        "--quiet",
    )
    assert result.returncode == 0, result.stderr
    assert "return a + b" in (example / "calc.py").read_text()
    assert "+    return a + b" in (tmp_path / "run" / "fix.patch").read_text()
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["solved"] == 1 and summary["config"]["command"] == "fix"
    assert len((tmp_path / "run" / "results.jsonl").read_text().splitlines()) == 1
    # The call was seeded from --seed (default 0), the task and the step, and says so.
    with TrajectoryStore(tmp_path / "run", create=False) as store:
        [trajectory] = store.trajectories()
    seed = Sampling(seed=0).call_seed(trajectory.task.task_id, 0)
    assert summary["config"]["seed"] == 0 and [s.seed for s in trajectory.steps] == [seed] * 2


def test_fix_with_patch_prints_a_diff_and_leaves_the_file(example, tmp_path):
    before = (example / "calc.py").read_text()
    result = run(
        "fix",
        str(example / "calc.py"),
        "--test-cmd",
        TEST_CMD,
        "--model",
        replies(tmp_path, GOOD),
        "--sandbox",
        "local",
        "--strategy",
        "refine",
        "--out",
        str(tmp_path / "run"),
        "--patch",
        "--quiet",
    )
    assert result.returncode == 0, result.stderr
    assert (
        result.stdout.startswith("--- a/calc.py\n+++ b/calc.py\n")
        and "+    return a + b" in result.stdout
    )
    assert (example / "calc.py").read_text() == before


def test_fix_that_fails_exits_1_and_says_what_it_tried(example, tmp_path):
    model = replies(tmp_path, WRONG, "VERDICT: accept\nCONFIDENCE: 0.7\nCRITIQUE: fine", "no idea")
    result = run(
        "fix",
        str(example / "calc.py"),
        "--test-cmd",
        TEST_CMD,
        "--model",
        model,
        "--sandbox",
        "local",
        "--strategy",
        "refine",
        "--budget",
        "2",
        "--out",
        str(tmp_path / "run"),
        "--json",
    )
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert not report["solved"] and report["outcome"] == "budget"
    assert "reviewer error" in report["steps"][0] and "no code in the reply" in report["steps"][1]
    assert "return a - b" in (example / "calc.py").read_text()


def test_max_seconds_cuts_a_candidates_test_run(example, tmp_path):
    """A candidate whose tests hang is cut at what is left of --max-seconds and counted as a
    timeout; before, its run went on to the folder's test timeout (300 s)."""
    hanging = "```python\nimport time\n\n\ndef add(a, b):\n    time.sleep(100_000)\n```"
    result = run(
        "fix",
        str(example / "calc.py"),
        "--test-cmd",
        TEST_CMD,
        "--model",
        replies(tmp_path, hanging, "VERDICT: refine\nCONFIDENCE: 0.5\nCRITIQUE: it hangs"),
        "--sandbox",
        "local",
        "--strategy",
        "refine",
        "--max-seconds",
        "10",
        "--out",
        str(tmp_path / "run"),
        "--json",
    )
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    assert report["outcome"] == "budget" and len(report["steps"]) == 1
    cut = re.search(r"timed out after ([\d.]+) s", report["steps"][0])
    assert cut and float(cut.group(1)) <= 10, report["steps"]


# A model that would take 600 s over its reply, and a budget of 20 s (room for the preflight's
# test run on a loaded machine): the run must end near the budget. The bound asserted is loose
# (no test depends on speed): half the 600 s the reply would take, which is what a run that
# waited for it took before.
SLOW = 600
BUDGET = "20"
ENDED_WELL_BEFORE = SLOW / 2


def slow_replies(tmp_path: Path, *texts: str) -> str:
    path = tmp_path / "slow.json"
    path.write_text(json.dumps([{"reply": text, "seconds": SLOW} for text in texts]))
    return f"scripted:{path}"


def test_max_seconds_cuts_a_model_call_that_is_running(example, tmp_path):
    """--max-seconds binds a model call already running: the call is cut when the budget runs
    out, the half reply is recorded (never tested), the task ends as "time budget spent" and
    its tokens count; before, fix waited for the whole reply."""
    started = time.monotonic()
    result = run(
        "fix",
        str(example / "calc.py"),
        "--test-cmd",
        TEST_CMD,
        "--model",
        slow_replies(tmp_path, GOOD),
        "--sandbox",
        "local",
        "--strategy",
        "refine",
        "--max-seconds",
        BUDGET,
        "--out",
        str(tmp_path / "run"),
        "--json",
    )
    assert time.monotonic() - started < ENDED_WELL_BEFORE
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    assert report["outcome"] == "budget" and report["error"] == ""
    assert report["steps"] == [
        "#0 solve [reply cut when the time budget ran out]: "
        "no candidate: reply cut when the time budget ran out"
    ]
    with TrajectoryStore(tmp_path / "run", create=False) as store:
        [trajectory] = store.trajectories()
    assert trajectory.metadata["stop_reason"].startswith("time budget spent")
    [step] = trajectory.steps
    assert step.finish_reason == "time" and step.prompt_tokens > 0
    assert "return a - b" in (example / "calc.py").read_text()


def test_bench_ends_each_task_at_max_seconds_when_the_model_is_slow(tmp_path):
    """bench with a model that would take 600 s a reply and --max-seconds 20: each task ends at
    its budget, recorded as spent; the run finishes and resumes to the same result."""
    data = quixbugs_file(tmp_path, ["plus"])
    out = tmp_path / "run"
    args = (
        "bench",
        "quixbugs",
        "--data",
        str(data),
        "--model",
        slow_replies(tmp_path, *[fixed("plus")] * 8),  # one batched call of 8 samples
        "--strategy",
        "best-of-n",
        "--sandbox",
        "local",
        "--max-seconds",
        BUDGET,
        "--out",
        str(out),
        "--json",
    )
    started = time.monotonic()
    result = run(*args)
    assert time.monotonic() - started < ENDED_WELL_BEFORE
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)["summary"]
    assert summary["tasks"] == 1 and summary["solved"] == 0
    with TrajectoryStore(out, create=False) as store:
        [trajectory] = store.trajectories()
    assert trajectory.outcome == "budget"
    assert trajectory.metadata["stop_reason"].startswith("time budget spent")
    assert trajectory.steps and all(s.finish_reason == "time" for s in trajectory.steps)
    # A finished task is not run again: the resumed run reports what was recorded.
    again = run(*args)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["summary"]["solved"] == 0


def test_fix_that_fails_prints_each_step_it_tried(example, tmp_path):
    model = replies(
        tmp_path, WRONG, "VERDICT: refine\nCONFIDENCE: 0.7\nCRITIQUE: wrong sign", "no idea"
    )
    result = run(
        "fix",
        str(example / "calc.py"),
        "--test-cmd",
        TEST_CMD,
        "--model",
        model,
        "--sandbox",
        "local",
        "--strategy",
        "refine",
        "--budget",
        "2",
        "--out",
        str(tmp_path / "run"),
    )
    assert result.returncode == 1
    assert "not fixed (budget" in result.stdout and "tried 2 candidates" in result.stdout
    assert (
        "#0 solve:" in result.stdout
        and "#1 refine (from #0): no candidate: no code in the reply" in result.stdout
    )


def test_fix_stops_on_the_token_budget_it_is_given(example, tmp_path):
    model = replies(tmp_path, WRONG, "VERDICT: refine\nCONFIDENCE: 0.7\nCRITIQUE: wrong sign", GOOD)
    result = run(
        "fix",
        str(example / "calc.py"),
        "--test-cmd",
        TEST_CMD,
        "--model",
        model,
        "--sandbox",
        "local",
        "--strategy",
        "refine",
        "--max-tokens",
        "10",
        "--max-seconds",
        "900",
        "--out",
        str(tmp_path / "run"),
    )
    assert result.returncode == 1
    assert (
        "not fixed (budget: token budget spent" in result.stdout
        and "tried 1 candidates" in result.stdout
    )
    budget = json.loads((tmp_path / "run" / "summary.json").read_text())["config"]["budget"]
    assert budget == {"max_candidates": 8, "max_tokens": 10, "max_seconds": 900.0}


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing path", "no such file or directory"),
        ("passing tests", "nothing to repair"),
        ("unreachable model", "cannot reach the model server"),
        ("command not found", "it cannot start: "),
    ],
)
def test_fix_refuses_bad_input_and_leaves_no_run_directory(example, tmp_path, case, message):
    path, test_cmd, model = example / "calc.py", TEST_CMD, replies(tmp_path, GOOD)
    if case == "missing path":
        path = example / "nope.py"
    elif case == "passing tests":
        (example / "calc.py").write_text("def add(a, b):\n    return a + b\n")
    elif case == "unreachable model":
        model = "openai:x@http://127.0.0.1:9/v1"
    else:
        test_cmd = "no-such-test-runner"
    out = tmp_path / "run"
    result = run(
        "fix",
        str(path),
        "--test-cmd",
        test_cmd,
        "--model",
        model,
        "--sandbox",
        "local",
        "--out",
        str(out),
    )
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not out.exists()


def test_bench_writes_results_and_summary(tmp_path):
    data = quixbugs_file(tmp_path, ["plus", "total"])
    model = replies(
        tmp_path,
        fixed("plus"),
        WRONG.replace("add", "total"),
        "VERDICT: refine\nCONFIDENCE: 0.9\nCRITIQUE: use +",
        fixed("total"),
    )
    out = tmp_path / "run"
    result = run(
        "bench",
        "quixbugs",
        "--data",
        str(data),
        "--model",
        model,
        "--strategy",
        "refine",
        "--budget",
        "3",
        "--sandbox",
        "local",
        "--out",
        str(out),
        "--json",
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)["summary"]
    assert summary["tasks"] == 2 and summary["solved"] == 2 and summary["pass@1"] == 0.5
    assert summary["pass@k"] == {"1": 0.5, "2": 1.0}
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [(r["task_id"], r["candidates"]) for r in rows] == [
        ("quixbugs/plus", 1),
        ("quixbugs/total", 2),
    ]
    assert all(r["sandbox_seconds"] > 0 and r["wall_seconds"] > 0 and r["tokens"] > 0 for r in rows)
    assert json.loads((out / "summary.json").read_text())["config"]["strategy"] == "refine"

    exported = tmp_path / "trajectories.jsonl"
    result = run("export", str(out), "--out", str(exported))
    assert result.returncode == 0 and len(exported.read_text().splitlines()) == 2

    # The same command again finds every task finished: no model call (the replies are spent).
    again = run(
        "bench",
        "quixbugs",
        "--data",
        str(data),
        "--model",
        model,
        "--strategy",
        "refine",
        "--budget",
        "3",
        "--sandbox",
        "local",
        "--out",
        str(out),
        "--quiet",
    )
    assert again.returncode == 0, again.stderr
    assert "2/2 solved" in again.stdout


def test_bench_makes_each_result_row_once(tmp_path, monkeypatch):
    """results.jsonl is rewritten after every task from rows made as each task finished, not
    from every trajectory again (which grew with the square of a run's tasks)."""
    from typer.testing import CliRunner

    from selfrepair.cli import bench
    from selfrepair.cli.commands import app
    from selfrepair.metrics import result_row

    names = ["plus", "total", "sum3"]
    made = []
    monkeypatch.setattr(bench, "result_row", lambda t: made.append(t.task.task_id) or result_row(t))

    out = tmp_path / "run"
    result = CliRunner().invoke(
        app,
        [
            "bench",
            "quixbugs",
            "--data",
            str(quixbugs_file(tmp_path, names)),
            "--model",
            replies(tmp_path, *map(fixed, names)),
            "--strategy",
            "refine",
            "--sandbox",
            "local",
            "--out",
            str(out),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    assert made == [f"quixbugs/{name}" for name in names]
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [r["task_id"] for r in rows] == made and all(r["solved"] for r in rows)


def test_bench_table_output(tmp_path):
    data = quixbugs_file(tmp_path, ["plus"])
    result = run(
        "bench",
        "quixbugs",
        "--data",
        str(data),
        "--model",
        replies(tmp_path, fixed("plus")),
        "--budget",
        "1",
        "--sandbox",
        "local",
        "--out",
        str(tmp_path / "run"),
    )
    assert result.returncode == 0, result.stderr
    assert (
        "repair rate" in result.stdout and "pass@1" in result.stdout and "pass@t" in result.stdout
    )


@pytest.mark.parametrize(
    "case, message",
    [
        ("broken data", "bad JSON"),
        ("missing data", "no such file"),
        ("other run", "holds a run with other settings"),
    ],
)
def test_bench_refuses_bad_input(tmp_path, case, message):
    data = quixbugs_file(tmp_path, ["plus"])
    out = tmp_path / "run"
    if case == "broken data":
        data.write_text('{"name": "plus", "buggy_program": \n')
    elif case == "missing data":
        data = tmp_path / "nope.jsonl"
    else:
        first = run(
            "bench",
            "quixbugs",
            "--data",
            str(data),
            "--model",
            replies(tmp_path, fixed("plus")),
            "--budget",
            "1",
            "--sandbox",
            "local",
            "--out",
            str(out),
            "--quiet",
        )
        assert first.returncode == 0, first.stderr
    result = run(
        "bench",
        "quixbugs",
        "--data",
        str(data),
        "--model",
        replies(tmp_path, fixed("plus")),
        "--budget",
        "5",
        "--sandbox",
        "local",
        "--out",
        str(out),
    )
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    if case != "other run":
        assert not out.exists()
