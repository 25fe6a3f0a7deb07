"""The trained reviewer (verifier): its data (labels from the tests, suspicious runs left out,
balanced, split by task), a two-step training run on SmolLM2 with a held-out AUC in its card,
the direction of its score, and its use: best-of-n tests the most promising candidate first
and stops at the first pass."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TINY_TRAINING, operator_reply, operator_task
from selfrepair.agents.models.backends import load_model
from selfrepair.agents.verifier import VerdictScorer, load_verifier, verify_messages
from selfrepair.graphs.run import repair_task
from selfrepair.sandbox.choose import open_sandbox
from selfrepair.training.datasets import read_runs, reviewer_dataset, reviewer_rows
from selfrepair.training.reviewer import train_reviewer

from selfrepair.errors import SelfRepairError
from selfrepair.settings import Budget, Sampling
from selfrepair.stats import auc
from selfrepair.store import TrajectoryStore
from selfrepair.types import Message, Step, Trajectory

SELFREPAIR = str(Path(sys.executable).parent / "selfrepair")


def candidate_code(row: dict) -> str:
    return row["messages"][1]["content"].split("Proposed code:")[1]


def test_each_tested_candidate_is_labelled_by_its_tests(scripted_run):
    sources = read_runs([scripted_run])
    rows = reviewer_rows(sources.trajectories)
    verdicts = {
        (
            t.task.task_id,
            json.dumps([m.model_dump() for m in verify_messages(t, s)]),
        ): s.report.passed
        for t in sources.trajectories
        for s in t.executed()
    }
    assert rows and {row["label"] for row in rows} == {0, 1}
    for row in rows:
        prompt = json.dumps(row["messages"][:-1])
        assert verdicts[(row["task_id"], prompt)] == bool(row["label"])
        assert row["messages"][-1] == {
            "role": "assistant",
            "content": "yes" if row["label"] else "no",
        }
    never = [row for row in rows if row["task_id"] == "never-solved"]
    assert never and not any(row["label"] for row in never)


def test_a_refinement_is_judged_with_its_parents_feedback(scripted_run):
    rows = reviewer_rows(read_runs([scripted_run]).trajectories)
    refined = [r for r in rows if r["task_id"] == "add" and r["kind"] == "refine"]
    assert refined and all("AssertionError" in r["messages"][1]["content"] for r in refined)


def test_suspicious_runs_are_left_out(scripted_run, tmp_path):
    with TrajectoryStore(scripted_run) as store:
        solved = next(t for t in store.trajectories() if t.task.task_id == "add" and t.solved)
    hacked = solved.model_copy(deep=True)
    hacked.task = hacked.task.model_copy(update={"task_id": "hacked"})
    winner = hacked.steps[hacked.solution_step]
    winner.report = winner.report.model_copy(update={"suspicious": "the report was forged"})
    with TrajectoryStore(tmp_path / "run") as store:
        store.save(hacked)
    sources = read_runs([tmp_path / "run"])
    rows = reviewer_rows(sources.trajectories)
    assert sources.suspicious_left_out == 1
    assert "return a + b" not in "".join(candidate_code(r) for r in rows)
    assert rows and all(r["label"] == 0 for r in rows)  # the failing sibling is still there


def test_training_side_is_balanced_and_tasks_never_cross_the_split(scripted_run):
    data = reviewer_dataset(read_runs([scripted_run]), eval_fraction=0.3)
    train, test = data["train"], data["test"]
    assert sum(train["label"]) * 2 == len(train) > 0
    assert len(test) > 0
    assert not set(train["task_id"]) & set(test["task_id"])


def test_runs_with_one_verdict_only_are_refused(scripted_run, tmp_path):
    with TrajectoryStore(scripted_run) as store:
        failures = [t for t in store.trajectories() if not t.solved]
    with TrajectoryStore(tmp_path / "run") as store:
        for trajectory in failures:
            store.save(trajectory)
    with pytest.raises(SelfRepairError, match="both passing and failing"):
        reviewer_dataset(read_runs([tmp_path / "run"]))
    result = subprocess.run(
        [
            SELFREPAIR,
            "train",
            "reviewer",
            "--runs",
            str(tmp_path / "run"),
            "--out",
            str(tmp_path / "a"),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "both passing and failing" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "a").exists()


def test_auc_counts_ties_half():
    assert auc([0.9, 0.8, 0.1], [1, 1, 0]) == 1.0
    assert auc([0.1, 0.9], [1, 0]) == 0.0
    assert auc([0.5, 0.5], [1, 0]) == 0.5


# ------------------------------------------------------------------ real model (SmolLM2)


@pytest.fixture(scope="module")
def reviewer_adapter(scripted_run, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("reviewer") / "adapter"
    card = train_reviewer(
        read_runs([scripted_run]), "smollm2", out, eval_fraction=0.3, settings=TINY_TRAINING
    )
    return out, card


@pytest.mark.model
@pytest.mark.slow
def test_two_training_steps_write_an_adapter_with_held_out_figures(
    reviewer_adapter, smollm2_folder
):
    out, card = reviewer_adapter
    assert (out / "adapter_model.safetensors").is_file()
    assert card["steps"] == 2 and card["provenance"]["role"] == "reviewer"
    assert card["provenance"]["train_passing"] == card["provenance"]["train_failing"]
    held_out = card["validation"]
    assert held_out["tasks"] >= 1 and held_out["examples"] >= 2
    for model in ("trained", "untrained"):
        assert 0.0 <= held_out[model]["auc"] <= 1.0
        assert 0.0 <= held_out[model]["false_accept_rate"] <= 1.0
    assert json.loads((out / "card.json").read_text())["validation"] == held_out
    scorer = load_verifier(f"hf:{smollm2_folder}+{out}")
    with TrajectoryStore(Path(card["data"]["run_dirs"][0]), read_only=True) as store:
        trajectory = next(iter(store.trajectories()))
    assert 0.0 < scorer.score(trajectory, trajectory.executed()[0]) < 1.0


@pytest.mark.model
def test_the_score_is_the_probability_of_yes(smollm2):
    """The direction of the score: asked to answer yes, the model's P(pass) is higher than
    asked to answer no."""
    scorer = VerdictScorer(smollm2)

    def asked(word: str) -> float:
        return scorer.probability(
            [Message(role="user", content=f"Reply with the single word '{word}'.")]
        )

    assert asked("yes") > 0.5 > asked("no")


def test_a_verifier_must_read_likelihoods_in_process(tmp_path):
    data = tmp_path / "tasks.jsonl"
    record = {
        "name": "add",
        "buggy_program": "def add(a, b):\n    return a - b\n",
        "docstring": "Return a plus b.",
        "solution": "def add(a, b):\n    return a + b\n",
        "tests": "assert add(1, 2) == 3\n",
    }
    data.write_text(json.dumps(record) + "\n")
    bench = [SELFREPAIR, "bench", "quixbugs", "--data", str(data), "--out", str(tmp_path / "r")]
    for spec in ("openai:m@http://127.0.0.1:9/v1", "scripted:replies.json"):
        result = subprocess.run([*bench, "--verifier", spec], capture_output=True, text=True)
        assert result.returncode == 2 and "next-token likelihoods" in result.stderr
    result = subprocess.run(
        [*bench, "--strategy", "refine", "--verifier", "smollm2"], capture_output=True, text=True
    )
    assert result.returncode == 2 and "orders best-of-n" in result.stderr
    assert not (tmp_path / "r").exists()


# ------------------------------------------------------------------ best-of-n with a verifier


class ScriptedScorer:
    """Scores candidates by the operator in their code."""

    spec = "scripted-scorer"

    def __init__(self, scores: dict[str, float]) -> None:
        self.scores = scores
        self.asked = 0

    def score(self, trajectory: Trajectory, step: Step) -> float:
        self.asked += 1
        code = next(iter(step.candidate.files.values()))
        return next(p for op, p in self.scores.items() if f"a {op} b" in code)


def best_of_four(tmp_path: Path, verifier: ScriptedScorer | None) -> Trajectory:
    """add (its bug: `-`): four samples, the right one (`+`) third."""
    replies = tmp_path / "replies.json"
    replies.write_text(json.dumps([operator_reply(op) for op in ("%", "*", "+", "//")]))
    sandbox = open_sandbox("local")
    try:
        return repair_task(
            operator_task("add"),
            load_model(f"scripted:{replies}"),
            sandbox,
            "best-of-n",
            Budget(max_candidates=4),
            sampling=Sampling(samples=4),
            verifier=verifier,
        )
    finally:
        sandbox.close()


def test_without_a_verifier_every_sample_is_tested(tmp_path):
    trajectory = best_of_four(tmp_path, None)
    assert trajectory.solved and len(trajectory.executed()) == 4


@pytest.mark.parametrize(
    ("scores", "runs"),
    [
        ({"+": 0.9, "%": 0.2, "*": 0.3, "//": 0.1}, 1),  # the right one first
        ({"*": 0.9, "+": 0.8, "%": 0.2, "//": 0.1}, 2),  # second
    ],
)
def test_the_most_promising_is_tested_first_and_the_first_pass_stops(tmp_path, scores, runs):
    scorer = ScriptedScorer(scores)
    trajectory = best_of_four(tmp_path, scorer)
    assert trajectory.solved and scorer.asked == 4
    assert len(trajectory.executed()) == runs
    solution = trajectory.steps[trajectory.solution_step]
    assert "a + b" in solution.candidate.files["add.py"]
    assert [s.verifier_score for s in trajectory.steps] == [
        scores[op] for op in ("%", "*", "+", "//")
    ]
    assert trajectory.metadata["roles"] == {"verifier": "scripted-scorer"}


def test_with_no_pass_the_score_ranks_candidates_that_pass_as_many_tests(tmp_path):
    replies = tmp_path / "replies.json"
    replies.write_text(json.dumps([operator_reply(op) for op in ("%", "*")]))
    sandbox = open_sandbox("local")
    try:
        trajectory = repair_task(
            operator_task("add").model_copy(update={"task_id": "never"}),
            load_model(f"scripted:{replies}"),
            sandbox,
            "best-of-n",
            Budget(max_candidates=2),
            sampling=Sampling(samples=2),
            verifier=ScriptedScorer({"%": 0.1, "*": 0.7}),
        )
    finally:
        sandbox.close()
    assert not trajectory.solved and len(trajectory.executed()) == 2
    assert (
        trajectory.metadata["best_step"] == 1
    )  # `*`: both fail the first assert, it scored higher
