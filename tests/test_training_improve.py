"""`improve`: its refusals, and a round whose repair run solves nothing stops there."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import operator_task
from selfrepair.errors import SelfRepairError
from selfrepair.graphs.budget import Budget, Sampling
from selfrepair.sandbox.choose import open_sandbox
from selfrepair.training.improve import ImproveSettings, improve

SELFREPAIR = str(Path(sys.executable).parent / "selfrepair")


@pytest.fixture(scope="module")
def sandbox():
    box = open_sandbox("local")
    yield box
    box.close()


def test_overlapping_train_and_eval_tasks_are_refused(sandbox, tmp_path):
    tasks = [operator_task("add"), operator_task("sub")]
    with pytest.raises(SelfRepairError, match="overlap"):
        improve(tasks, tasks[1:], ImproveSettings(), sandbox, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.model
def test_a_round_that_solves_nothing_says_so_and_stops(sandbox, tmp_path):
    # Eight tokens are too few for SmolLM2 to write a fenced fix: no candidate can pass.
    settings = ImproveSettings(rounds=3, budget=Budget(max_candidates=1), sampling=Sampling(samples=1, max_tokens=8))
    records = improve([operator_task("add")], [operator_task("sub")], settings, sandbox, tmp_path / "out")
    assert len(records) == 1 and "solved none of the 1 train tasks" in records[0]["stopped"]
    assert json.loads((tmp_path / "out" / "improve.json").read_text())[0]["train_solved"] == 0
    assert not (tmp_path / "out" / "round-1" / "adapter").exists()
    assert not (tmp_path / "out" / "eval-base").exists()


def test_cli_refuses_a_missing_task_file(tmp_path):
    result = subprocess.run(
        [SELFREPAIR, "improve", "--train", str(tmp_path / "no.jsonl"), "--eval", str(tmp_path / "no.jsonl"), "--out", str(tmp_path / "out")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 2 and "no such file" in result.stderr
    assert not (tmp_path / "out").exists()
