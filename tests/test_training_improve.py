"""`improve`: its refusals, a round whose repair run solves nothing stops there, and a
killed run resumes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TINY_TRAINING, operator_reply, operator_task
from selfrepair.agents.models.adapters import read_card
from selfrepair.sandbox.choose import open_sandbox
from selfrepair.training.evaluate import Evaluation
from selfrepair.training.improve import ImproveSettings, improve, repair_run

from selfrepair.comparison import COMPARISON, read_comparison
from selfrepair.errors import SelfRepairError
from selfrepair.executor.local import LocalExecutor
from selfrepair.report import write_report
from selfrepair.settings import Budget, Sampling
from selfrepair.store import TrajectoryStore

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
    settings = ImproveSettings(
        rounds=3, budget=Budget(max_candidates=1), sampling=Sampling(samples=1, max_tokens=8)
    )
    records = improve(
        [operator_task("add")], [operator_task("sub")], settings, executor, tmp_path / "out"
    )
    assert len(records) == 1 and "solved none of the 1 train tasks" in records[0]["stopped"]
    assert json.loads((tmp_path / "out" / "improve.json").read_text())[0]["train_solved"] == 0
    assert not (tmp_path / "out" / "round-1" / "adapter").exists()
    assert not (tmp_path / "out" / "eval-base").exists()


def lenient_task(name: str):
    """A train task any reply with code passes: the model's every fenced answer is a verified
    repair, so a real model is sure to leave something to learn from."""
    task = operator_task("add")
    return task.model_copy(
        update={
            "task_id": name,
            "tests": task.tests.model_copy(update={"files": {f"test_{name}.py": "assert True\n"}}),
        }
    )


@pytest.mark.model
@pytest.mark.slow
def test_two_rounds_train_from_the_base_and_are_compared_with_the_same_seeds(executor, tmp_path):
    out = tmp_path / "out"
    settings = ImproveSettings(
        rounds=2,
        budget=Budget(max_candidates=2),
        sampling=Sampling(samples=2, max_tokens=40),
        train_settings=TINY_TRAINING,
        lora_r=4,
        evaluation=Evaluation(samples=2),
        seed=3,
    )
    train, held_out = (
        [lenient_task("double"), lenient_task("triple")],
        [operator_task("add"), operator_task("sub")],
    )
    records = improve(train, held_out, settings, executor, out)
    assert [r["round"] for r in records] == [1, 2] and all("stopped" not in r for r in records)
    # Round 2 repairs with round 1's adapter, and trains a new adapter from the base on both rounds' data.
    assert records[1]["model"].endswith("round-1/adapter")
    card = read_card(out / "round-2" / "adapter")
    assert (
        card["provenance"]["initialised_from"] == "base"
        and card["provenance"]["improve_round"] == 2
    )
    assert [Path(d).parent.name for d in card["data"]["run_dirs"]] == ["round-1", "round-2"]
    assert (
        "eval_base" in records[0]["seconds"] and "eval_base" not in records[1]["seconds"]
    )  # the base: once

    comparison = read_comparison(out / COMPARISON)
    result = comparison["eval_sets"]["eval"]
    assert [m["name"] for m in result["models"]] == ["base", "round 1", "round 2"] and result[
        "samples"
    ] == 2
    assert [d["name"] for d in result["differences"]] == ["round 1", "round 2"]
    # each task is its own function here: clustered by function, as many clusters as tasks
    assert result["clusters"] == result["tasks"]
    assert all("clustered" in d["pass@1"] for d in result["differences"])
    assert "Clustered by function" in (out / "comparison.md").read_text()
    assert [r["round"] for r in comparison["rounds"]] == [1, 2]
    seeds = {}
    for run in ("eval-base", "round-1/eval-trained", "round-2/eval-trained"):
        with TrajectoryStore(out / run, create=False) as store:
            seeds[run] = {t.task.task_id: [s.seed for s in t.steps] for t in store.trajectories()}
    assert seeds["eval-base"] == seeds["round-1/eval-trained"] == seeds["round-2/eval-trained"]
    assert "<svg" in write_report([out], tmp_path / "report.html").read_text()

    # Run again: every round is finished, nothing is redone, the same records come back.
    assert improve(train, held_out, settings, executor, out) == records


def test_cli_refuses_a_missing_task_file(tmp_path):
    result = subprocess.run(
        [
            SELFREPAIR,
            "improve",
            "--train",
            str(tmp_path / "no.jsonl"),
            "--eval",
            str(tmp_path / "no.jsonl"),
            "--out",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
    )
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
        repair_run(
            tasks,
            f"scripted:{replies}",
            executor,
            settings,
            run_dir,
            "train",
            kill_after_the_first_task,
        )
    # Started again, it repairs only the task that was cut off: the finished one is kept, and
    # a model call for it would find no reply left.
    replies.write_text(json.dumps([operator_reply("-")]))
    events = []
    summary = repair_run(
        tasks, f"scripted:{replies}", executor, settings, run_dir, "train", events.append
    )
    assert summary["tasks"] == 2 and summary["solved"] == 2
    assert [(e["done"], e["solved"]) for e in events] == [(0, 0), (1, 1), (2, 2)]
    with TrajectoryStore(run_dir, create=False) as store:
        assert len(store) == 2


def test_an_out_folder_of_another_run_is_refused_once_it_holds_a_result(executor, tmp_path):
    out = tmp_path / "out"
    train, held_out = [operator_task("add")], [operator_task("sub")]
    # A base that cannot be loaded stops the first run at its first phase, OUT already made.
    settings = ImproveSettings(base=f"hf:{tmp_path / 'no-model'}")
    with pytest.raises(SelfRepairError, match="hf model folder not found"):
        improve(train, held_out, settings, executor, out)
    # That run produced nothing: the command corrected (here: another method) is not
    # refused, and its settings replace the failed run's.
    dpo = ImproveSettings(base=settings.base, method="dpo")
    with pytest.raises(SelfRepairError, match="hf model folder not found"):
        improve(train, held_out, dpo, executor, out)
    assert json.loads((out / "settings.json").read_text())["settings"]["method"] == "dpo"
    # Once a phase holds a trajectory, a run of other settings is refused.
    replies = tmp_path / "replies.json"
    replies.write_text(json.dumps([operator_reply("+")]))
    repair_run(
        train,
        f"scripted:{replies}",
        executor,
        dpo,
        out / "round-1" / "train-run",
        "train",
        lambda event: None,
    )
    with pytest.raises(
        SelfRepairError, match=r"holds an improve run with other settings \(method\)"
    ):
        improve(train, held_out, settings, executor, out)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(SelfRepairError, match="holds no improve run"):
        improve(train, held_out, settings, executor, tmp_path / "other")
