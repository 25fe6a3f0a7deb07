"""`improve`: its refusals, a round whose repair run solves nothing stops there, and a
killed run resumes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import operator_reply, operator_task
from selfrepair.errors import SelfRepairError
from selfrepair.executor.local import LocalExecutor
from selfrepair.graphs.budget import Budget, Sampling
from selfrepair.sandbox.choose import open_sandbox
from selfrepair.store import TrajectoryStore
from selfrepair.training.improve import ImproveSettings, improve, repair_run

SELFREPAIR = str(Path(sys.executable).parent / "selfrepair")


@pytest.fixture(scope="module")
def executor():
    with LocalExecutor(open_sandbox("local")) as local:
        yield local


def test_overlapping_train_and_eval_tasks_are_refused(executor, tmp_path):
    tasks = [operator_task("add"), operator_task("sub")]
    with pytest.raises(SelfRepairError, match="overlap"):
        improve(tasks, tasks[1:], ImproveSettings(), executor, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.model
def test_a_round_that_solves_nothing_says_so_and_stops(executor, tmp_path):
    # Eight tokens are too few for SmolLM2 to write a fenced fix: no candidate can pass.
    settings = ImproveSettings(rounds=3, budget=Budget(max_candidates=1), sampling=Sampling(samples=1, max_tokens=8))
    records = improve([operator_task("add")], [operator_task("sub")], settings, executor, tmp_path / "out")
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


class Killed(Exception):
    """What a kill looks like to the code that was running."""


def test_a_killed_repair_phase_resumes_where_it_stopped(executor, tmp_path):
    tasks = [operator_task("add"), operator_task("sub")]
    settings = ImproveSettings(strategy="refine", budget=Budget(max_candidates=1))
    run_dir = tmp_path / "round-1" / "train-run"
    replies = tmp_path / "replies.json"
    replies.write_text(json.dumps([operator_reply("+"), operator_reply("-")]))

    def kill_after_the_first_task(event):
        if event["done"] == 1:
            raise Killed

    with pytest.raises(Killed):
        repair_run(tasks, f"scripted:{replies}", executor, settings, run_dir, "train", kill_after_the_first_task)
    # Started again, it repairs only the task that was cut off: the finished one is kept, and
    # a model call for it would find no reply left.
    replies.write_text(json.dumps([operator_reply("-")]))
    events = []
    summary = repair_run(tasks, f"scripted:{replies}", executor, settings, run_dir, "train", events.append)
    assert summary["tasks"] == 2 and summary["solved"] == 2
    assert [(e["done"], e["solved"]) for e in events] == [(0, 0), (1, 1), (2, 2)]
    with TrajectoryStore(run_dir, create=False) as store:
        assert len(store) == 2


def test_an_out_folder_of_another_run_is_refused(executor, tmp_path):
    out = tmp_path / "out"
    train, held_out = [operator_task("add")], [operator_task("sub")]
    # A base that cannot be loaded stops the first run at its first phase, OUT already made.
    settings = ImproveSettings(base=f"hf:{tmp_path / 'no-model'}")
    with pytest.raises(SelfRepairError, match="hf model folder not found"):
        improve(train, held_out, settings, executor, out)
    with pytest.raises(SelfRepairError, match=r"holds an improve run with other settings \(method\)"):
        improve(train, held_out, ImproveSettings(base=settings.base, method="dpo"), executor, out)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(SelfRepairError, match="holds no improve run"):
        improve(train, held_out, settings, executor, tmp_path / "other")
