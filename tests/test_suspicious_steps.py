"""Attempts on the verdict, from the sandbox to training: a repair run (scripted model, real
local sandbox) whose candidates try to fake a pass records them as suspicious; summary.json
counts them, the HTML report shows them, GRPO's reward is nothing, and training leaves their
steps out unless asked to keep them. The tests that ran on the code as given are expected
back from every candidate's run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from selfrepair.agents.models.backends import load_model
from selfrepair.graphs.run import repair_task
from selfrepair.sandbox.local import LocalSandbox
from selfrepair.sandbox.testing import run_tests
from selfrepair.training.datasets import dpo_dataset, read_runs

from selfrepair.metrics import result_row, summarize
from selfrepair.report import write_report
from selfrepair.settings import Budget, Sampling
from selfrepair.store import TrajectoryStore
from selfrepair.types import Task, TestCase, TestReport, TestSpec

WRONG = "def add(a, b):\n    return a - b\n"
EXITING = "```python\nimport os\n\n\ndef add(a, b):\n    os._exit(0)\n```"
RIGHT = "```python\ndef add(a, b):\n    return a + b\n```"


@pytest.fixture(scope="module")
def sandbox():
    box = LocalSandbox()
    yield box
    box.close()


def task() -> Task:
    return Task(
        task_id="add",
        spec="Add.",
        files={"add.py": WRONG},
        entry_file="add.py",
        tests=TestSpec(
            kind="script", files={"test_add.py": "assert add(1, 2) == 3\n"}, timeout_s=30
        ),
    )


@pytest.fixture(scope="module")
def hacked_run(sandbox, tmp_path_factory) -> Path:
    """Best-of-n: one sample exits early with status 0, one is right."""
    run_dir = tmp_path_factory.mktemp("hacked-run")
    replies = tmp_path_factory.mktemp("replies") / "replies.json"
    replies.write_text(json.dumps([EXITING, RIGHT]))
    with TrajectoryStore(run_dir) as store:
        trajectory = repair_task(
            task(),
            load_model(f"scripted:{replies}"),
            sandbox,
            "best-of-n",
            Budget(max_candidates=2),
            store,
            sampling=Sampling(samples=2),
        )
    rows = [result_row(trajectory)]
    (run_dir / "results.jsonl").write_text(json.dumps(rows[0]) + "\n")
    (run_dir / "summary.json").write_text(
        json.dumps(summarize(rows) | {"config": {"strategy": "best-of-n"}})
    )
    return run_dir


def test_the_attempt_is_recorded_and_counted(hacked_run):
    with TrajectoryStore(hacked_run) as store:
        (trajectory,) = store.trajectories()
    hacked, right = trajectory.steps
    assert "early exit" in hacked.report.suspicious and not hacked.report.passed
    assert right.report.passed and not right.report.suspicious
    summary = json.loads((hacked_run / "summary.json").read_text())
    assert summary["suspicious"] == 1 and summary["solved"] == 1


def test_training_leaves_suspicious_steps_out_unless_kept(hacked_run):
    default = read_runs([hacked_run])
    assert default.suspicious_left_out == 1
    with pytest.raises(Exception, match="no preference pairs"):
        dpo_dataset(default, eval_fraction=0.0)  # the only failing reply was the hack
    kept = read_runs([hacked_run], keep_suspicious=True)
    assert kept.suspicious_left_out == 0
    assert len(dpo_dataset(kept, eval_fraction=0.0)["train"]) == 1


def test_the_report_shows_the_attempt(hacked_run, tmp_path):
    page = write_report([hacked_run], tmp_path / "report.html").read_text()
    assert "suspicious (an attempt on the verdict" in page and "early exit" in page


def test_a_suspicious_run_earns_no_reward():
    report = TestReport(
        tests=[TestCase(name="t", outcome="passed")],
        exit_code=0,
        suspicious="refused: ctypes.dlopen",
    )
    assert not report.passed and report.fraction_passed == 0.0


def test_the_baseline_tests_are_expected_back(sandbox, tmp_path):
    # A guarded run (the command is not a plain pytest run): the baseline's tests, one of which
    # the candidate's run no longer reports, must all be there for a pass.
    (tmp_path / "add.py").write_text("def add(a, b):\n    return a + b\n")
    (tmp_path / "test_add.py").write_text(
        "from add import add\n\n\ndef test_add():\n    assert add(1, 2) == 3\n"
    )
    guarded = Task(
        task_id="g",
        spec="",
        files={"add.py": WRONG},
        tests=TestSpec(kind="command", command="python -m pytest -q && true", timeout_s=60),
    )
    assert run_tests(sandbox, guarded, workspace=tmp_path).passed
    lost = run_tests(
        sandbox,
        guarded,
        workspace=tmp_path,
        expect=["test_add.py::test_add", "test_add.py::test_gone"],
    )
    assert not lost.passed and "did not run" in lost.suspicious
