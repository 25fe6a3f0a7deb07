"""The dataset builder over a store filled by a real (scripted model) repair run."""

from __future__ import annotations

import json

import pytest
from selfrepair.training.datasets import dpo_dataset, read_runs, sft_dataset

from selfrepair.errors import SelfRepairError
from selfrepair.store import TrajectoryStore


def replies_by_verdict(run_dir) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
    """(prompt, reply) pairs of every step whose candidate passed, and of every other step."""
    passed, other = set(), set()
    with TrajectoryStore(run_dir) as store:
        for trajectory in store.trajectories():
            for step in trajectory.steps:
                prompt = json.dumps([m.model_dump() for m in step.messages], sort_keys=True)
                ok = step.report is not None and step.report.passed
                (passed if ok else other).add((prompt, step.completion.strip()))
    return passed, other


def key(prompt: list[dict], reply: str) -> tuple[str, str]:
    return json.dumps(prompt, sort_keys=True), reply.strip()


def test_sft_targets_are_only_replies_that_passed_the_tests(scripted_run):
    data = sft_dataset(read_runs([scripted_run]), eval_fraction=0.3)
    passed, other = replies_by_verdict(scripted_run)
    rows = list(data["train"]) + list(data["test"])
    assert len(rows) == 12  # six tasks, each solved once by a sample and once by a refinement
    for row in rows:
        assert row["messages"][-1]["role"] == "assistant"
        pair = key(row["messages"][:-1], row["messages"][-1]["content"])
        assert pair in passed and pair not in other
    assert "never-solved" not in {row["task_id"] for row in rows}


def test_a_refinement_becomes_spec_faulty_code_and_feedback_to_fixed_code(scripted_run):
    data = sft_dataset(read_runs([scripted_run]), eval_fraction=0.0)
    refinements = [row for row in data["train"] if row["kind"] == "refine"]
    assert len(refinements) == 6
    add = next(row for row in refinements if row["task_id"] == "add")
    prompt = add["messages"][-2]["content"]
    assert "Return a add b." in prompt  # the spec
    assert "return a * b" in prompt  # the faulty code (the wrong attempt it refines)
    assert "AssertionError" in prompt  # the test feedback
    assert "return a + b" in add["messages"][-1]["content"]  # the fixed code


def test_a_trajectory_that_claims_success_without_a_passing_report_is_not_learned_from(
    scripted_run, tmp_path
):
    with TrajectoryStore(scripted_run) as store:
        failed = next(t for t in store.trajectories() if t.task.task_id == "never-solved")
    forged = failed.model_copy(update={"outcome": "solved", "solution_step": 1})
    with TrajectoryStore(tmp_path) as store:
        store.save(forged)
    with pytest.raises(SelfRepairError, match="no test-verified successes"):
        sft_dataset(read_runs([tmp_path]))


def test_dpo_pairs_a_passing_and_a_failing_reply_to_the_same_prompt(scripted_run):
    data = dpo_dataset(read_runs([scripted_run]), eval_fraction=0.3)
    passed, other = replies_by_verdict(scripted_run)
    rows = list(data["train"]) + list(data["test"])
    assert len(rows) == 6  # one pair per solved task: the refine run repeats the same wrong reply
    for row in rows:
        assert key(row["prompt"], row["chosen"][0]["content"]) in passed
        assert key(row["prompt"], row["rejected"][0]["content"]) in other


def test_dpo_pairs_siblings_in_tree_search(tmp_path):
    """Two children of one node (one expansion, n=2): the passing one is preferred to the
    failing one, with the parent's refinement prompt; the root has no sibling to pair with."""
    from conftest import operator_reply, operator_task
    from selfrepair.agents.models.backends import load_model
    from selfrepair.graphs.run import repair_task
    from selfrepair.sandbox.choose import open_sandbox
    from selfrepair.training.datasets import dpo_rows

    from selfrepair.settings import Budget, Sampling

    replies = tmp_path / "replies.json"
    critique = "VERDICT: refine\nCONFIDENCE: 0.8\nCRITIQUE: wrong operator"
    replies.write_text(
        json.dumps([operator_reply("*"), critique, operator_reply("//"), operator_reply("+")])
    )
    sandbox = open_sandbox("local")
    try:
        trajectory = repair_task(
            operator_task("add"),
            load_model(f"scripted:{replies}"),
            sandbox,
            "tree",
            Budget(max_candidates=3),
            sampling=Sampling(children=2),
        )
    finally:
        sandbox.close()
    assert trajectory.solved and [(s.kind, s.parent) for s in trajectory.steps] == [
        ("solve", None),
        ("expand", 0),
        ("expand", 0),
    ]
    (row,) = dpo_rows([trajectory])
    assert (
        row["kind"] == "expand" and "return a * b" in row["prompt"][-1]["content"]
    )  # the parent's code
    assert row["chosen"][0]["content"] == operator_reply("+") and row["rejected"][0][
        "content"
    ] == operator_reply("//")


@pytest.mark.parametrize("fraction", [0.1, 0.3, 0.5, 0.9])
def test_no_task_is_on_both_sides_of_the_split(scripted_run, fraction):
    sources = read_runs([scripted_run])
    for data in (sft_dataset(sources, fraction), dpo_dataset(sources, fraction)):
        train, test = set(data["train"]["task_id"]), set(data["test"]["task_id"])
        assert train and test and not train & test


def test_reading_a_run_twice_adds_no_duplicates_and_the_split_is_stable(scripted_run):
    once = sft_dataset(read_runs([scripted_run]), 0.3)
    twice = sft_dataset(read_runs([scripted_run, scripted_run]), 0.3)
    assert len(twice["train"]) == len(once["train"]) and len(twice["test"]) == len(once["test"])
    assert twice["test"]["task_id"] == once["test"]["task_id"]


def test_an_empty_store_is_refused(tmp_path):
    TrajectoryStore(tmp_path).close()
    with pytest.raises(SelfRepairError, match="no trajectories"):
        read_runs([tmp_path])


def test_a_folder_without_a_store_is_refused(tmp_path):
    with pytest.raises(SelfRepairError, match="no trajectory store"):
        read_runs([tmp_path / "nowhere"])


def test_a_store_with_no_successes_is_refused_for_sft_and_dpo(scripted_run, tmp_path):
    with TrajectoryStore(scripted_run) as store:
        failures = [t for t in store.trajectories() if not t.solved]
    with TrajectoryStore(tmp_path) as store:
        for trajectory in failures:
            store.save(trajectory)
    sources = read_runs([tmp_path])
    with pytest.raises(SelfRepairError, match="no test-verified successes"):
        sft_dataset(sources)
    with pytest.raises(SelfRepairError, match="no test-verified successes"):
        dpo_dataset(sources)


@pytest.mark.parametrize("method", ["sft", "dpo"])
def test_prepared_splits_hold_the_trainer_columns_even_when_nothing_is_held_out(
    scripted_run, method
):
    from selfrepair.training.train import DATA_COLUMNS, prepare

    build = sft_dataset if method == "sft" else dpo_dataset
    prepared = prepare(method, build(read_runs([scripted_run]), eval_fraction=0.0))
    assert len(prepared["test"]) == 0 and len(prepared["train"]) > 0
    for split in prepared.values():
        assert split.column_names == list(DATA_COLUMNS[method])
    if method == "sft":  # the loss is on the reply alone: the last turn is the completion
        row = prepared["train"][0]
        assert [m["role"] for m in row["completion"]] == ["assistant"] and row["prompt"][-1][
            "role"
        ] == "user"
