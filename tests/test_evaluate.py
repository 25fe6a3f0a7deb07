"""How improve evaluates: k seeded samples per task, every one tested, the same seeds for every
model; the paired comparison written beside the runs; `report` drawing it. The models are
scripted (the real evaluation's arithmetic, without the wait); the sandbox is real."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import operator_reply, operator_task
from selfrepair.sandbox.choose import open_sandbox
from selfrepair.training.evaluate import COMPARISON_MD, Evaluation, write_comparison
from selfrepair.training.improve import ImproveSettings, repair_run

from selfrepair.comparison import COMPARISON, describe_difference, read_comparison
from selfrepair.errors import SelfRepairError
from selfrepair.executor.local import LocalExecutor
from selfrepair.report import write_report
from selfrepair.rundir import read_results
from selfrepair.settings import Budget, Sampling
from selfrepair.store import TrajectoryStore

TASKS = ["add", "sub", "mul"]


@pytest.fixture(scope="module")
def executor():
    with LocalExecutor(open_sandbox("local")) as local:
        yield local


def scripted(tmp_path: Path, name: str, replies: list[str]) -> str:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(replies))
    return f"scripted:{path}"


# Three samples per task. Base: add 0 of 3, sub 1 of 3, mul 0 of 3. Trained: add 2, sub 3, mul 0.
WRONG = {"add": "*", "sub": "*", "mul": "-"}
RIGHT = {"add": "+", "sub": "-", "mul": "*"}


def replies(passes: dict[str, int]) -> list[str]:
    return [
        operator_reply(RIGHT[t] if i < passes[t] else WRONG[t]) for t in TASKS for i in range(3)
    ]


@pytest.fixture(scope="module")
def evaluated(executor, tmp_path_factory) -> Path:
    """An improve-like folder: base and round 1 evaluated on three tasks, and the comparison."""
    out = tmp_path_factory.mktemp("improve")
    settings = ImproveSettings(
        strategy="refine",
        budget=Budget(max_candidates=1),
        sampling=Sampling(samples=1, temperature=0.2),
        evaluation=Evaluation(samples=3, temperature=0.7),
        seed=11,
    ).eval_phase()
    tasks = [operator_task(t) for t in TASKS]
    base = scripted(out, "base", replies({"add": 0, "sub": 1, "mul": 0}))
    trained = scripted(out, "trained", replies({"add": 2, "sub": 3, "mul": 0}))
    repair_run(tasks, base, executor, settings, out / "eval-base", "eval: base", lambda event: None)
    repair_run(
        tasks,
        trained,
        executor,
        settings,
        out / "round-1" / "eval-trained",
        "eval: round 1",
        lambda event: None,
    )
    rounds = [
        {
            "round": 1,
            "seconds": {"train_phase": 12.5, "train": 30.0, "eval_base": 2.0, "eval_trained": 2.0},
            "training": {"examples": {"count": 4, "tasks": 2}},
        }
    ]
    write_comparison(
        out,
        {"eval": [("base", out / "eval-base"), ("round 1", out / "round-1" / "eval-trained")]},
        11,
        rounds,
    )
    return out


def test_every_eval_task_gets_k_seeded_samples_all_tested(evaluated):
    rows = {row["task_id"]: row for row in read_results(evaluated / "eval-base")}
    assert {t: (r["samples"], r["passed_candidates"]) for t, r in rows.items()} == {
        "add": (3, 0),
        "sub": (3, 1),
        "mul": (3, 0),
    }
    with TrajectoryStore(evaluated / "eval-base", create=False) as store:
        trajectories = {t.task.task_id: t for t in store.trajectories()}
    sampling = Sampling(seed=11)
    for task, trajectory in trajectories.items():
        assert (
            trajectory.strategy == "best-of-n"
            and [s.kind for s in trajectory.steps] == ["sample"] * 3
        )
        # One call per task, seeded from the run's seed and the task: the same for every model.
        assert {s.seed for s in trajectory.steps} == {sampling.call_seed(task, 0)}
        assert all(s.review is None for s in trajectory.steps)  # no reviewer ranks passing samples
    with TrajectoryStore(evaluated / "round-1" / "eval-trained", create=False) as store:
        trained = {t.task.task_id: t for t in store.trajectories()}
    assert all(trained[t].steps[0].seed == trajectories[t].steps[0].seed for t in TASKS)
    assert (
        sum(s.report.passed for s in trained["sub"].steps) == 3
    )  # all tested, though the first passed


def test_the_comparison_pairs_base_and_round_by_task(evaluated):
    comparison = read_comparison(evaluated / COMPARISON)
    result = comparison["eval_sets"]["eval"]
    assert (result["tasks"], result["samples"], result["seed"]) == (3, 3, 11)
    base, trained = result["models"]
    assert base["pass@1"]["value"] == pytest.approx(1 / 9) and trained["pass@1"][
        "value"
    ] == pytest.approx(5 / 9)
    assert base["repair_rate"]["value"] == pytest.approx(1 / 3) and trained["repair_rate"][
        "value"
    ] == pytest.approx(2 / 3)
    # pass@2: add (2 of 3 passed: one failure cannot fill two draws) 1, sub 1, mul 0; base: sub 1 - C(2,2)/C(3,2)
    assert trained["pass@k"]["2"] == pytest.approx(2 / 3) and base["pass@k"]["2"] == pytest.approx(
        (1 - 1 / 3) / 3
    )
    (difference,) = result["differences"]
    assert (difference["repair_rate"]["gained"], difference["repair_rate"]["lost"]) == (1, 0)
    assert difference["repair_rate"]["p_value"] == 1.0  # one discordant task proves nothing
    assert (
        difference["pass@1"]["gained"],
        difference["pass@1"]["lost"],
        difference["pass@1"]["p_value"],
    ) == (2, 0, 0.5)
    assert difference["pass@1"]["value"] == pytest.approx(4 / 9)
    assert (
        difference["pass@1"]["low"] <= difference["pass@1"]["value"] <= difference["pass@1"]["high"]
    )
    markdown = (evaluated / COMPARISON_MD).read_text()
    assert (
        "| round 1 | 0.556 [" in markdown and describe_difference(difference["pass@1"]) in markdown
    )
    assert comparison["rounds"][0]["seconds"]["train"] == 30.0


def test_report_draws_the_rounds_with_intervals_and_p_values(evaluated, tmp_path):
    page = write_report([evaluated], tmp_path / "report.html").read_text()
    result = read_comparison(evaluated / COMPARISON)["eval_sets"]["eval"]
    (difference,) = result["differences"]
    assert page.count("<svg") == 1 and "3 tasks, 3 samples each" in page
    assert describe_difference(difference["repair_rate"]) in page and "class='round'" in page
    assert "<th>train s</th>" in page and "<td>30</td>" in page  # each phase's seconds


def test_a_comparison_file_of_another_shape_is_refused(tmp_path):
    (tmp_path / COMPARISON).write_text(json.dumps({"eval": {"models": []}}))
    with pytest.raises(SelfRepairError, match="is not a comparison"):
        read_comparison(tmp_path / COMPARISON)
