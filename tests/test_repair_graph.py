"""Control flow of the repair graphs, with the scripted model (replies from a file) and the
real local sandbox running the real tests."""

from __future__ import annotations

import dataclasses
import json
import os
import time
import typing
from pathlib import Path

import pytest
from selfrepair.agents.models.backends import load_model
from selfrepair.graphs import issue, repair, search
from selfrepair.graphs.nodes import RepairState
from selfrepair.graphs.run import CHECKPOINTED_TYPES, open_checkpointer, repair_task
from selfrepair.sandbox.choose import open_sandbox

from selfrepair import types
from selfrepair.cli.fix import describe_step
from selfrepair.metrics import result_row, summarize
from selfrepair.settings import Budget, Sampling
from selfrepair.store import TrajectoryStore
from selfrepair.types import Task

SNAPSHOTS = Path(__file__).parent / "snapshots"

BUGGY = "def add(a, b):\n    return a - b\n"
GOOD = "```python\ndef add(a, b):\n    return a + b\n```"
WRONG = "```python\ndef add(a, b):\n    return a * b\n```"
ALSO_GOOD = "```python\ndef add(a, b):\n    return sum([a, b])\n```"
ACCEPT = "VERDICT: accept\nCONFIDENCE: 0.9\nCRITIQUE: looks right"
REFINE = "VERDICT: refine\nCONFIDENCE: 0.8\nCRITIQUE: line 2 multiplies; it should add"


@pytest.fixture
def task() -> Task:
    return Task(
        task_id="add",
        spec="Return the sum of a and b.",
        files={"add.py": BUGGY},
        entry_file="add.py",
        tests=types.TestSpec(
            kind="script", files={"test_add.py": "assert add(1, 2) == 3\nassert add(2, 2) == 4\n"}
        ),
    )


@pytest.fixture(scope="module")
def sandbox():
    box = open_sandbox("local")
    yield box
    box.close()


class CountingModel:
    """The real scripted model, with a record of each generate call's n and timeout."""

    def __init__(self, path: Path) -> None:
        self.inner = load_model(f"scripted:{path}")
        self.spec = self.inner.spec
        self.calls: list[int] = []
        self.timeouts: list[float | None] = []

    def generate(self, messages, n=1, **options):
        self.calls.append(n)
        self.timeouts.append(options.get("timeout"))
        return self.inner.generate(messages, n=n, **options)


class TruncatingModel(CountingModel):
    """The scripted model, with every reply reported cut at max_tokens, as a backend does."""

    def generate(self, messages, n=1, **options):
        generation = super().generate(messages, n=n, **options)
        cut = [dataclasses.replace(c, finish_reason="length") for c in generation.completions]
        return dataclasses.replace(generation, completions=cut)


@pytest.fixture
def scripted(tmp_path):
    def make(*replies: str) -> CountingModel:
        path = tmp_path / f"replies-{len(list(tmp_path.glob('replies-*')))}.json"
        path.write_text(json.dumps(list(replies)))
        return CountingModel(path)

    return make


def test_refine_stops_as_soon_as_the_tests_pass(task, sandbox, scripted):
    model = scripted(GOOD, WRONG)
    trajectory = repair_task(task, model, sandbox, "refine", Budget(max_candidates=5))
    assert trajectory.outcome == "solved" and trajectory.solution_step == 0
    assert len(trajectory.steps) == 1 and model.calls == [1]
    assert trajectory.steps[0].review is None  # a pass needs no reviewer
    assert trajectory.metadata["stop_reason"] == "tests pass"


def test_refine_after_a_failure_uses_code_feedback_and_critique(task, sandbox, scripted):
    model = scripted(WRONG, REFINE, GOOD)
    trajectory = repair_task(task, model, sandbox, "refine", Budget(max_candidates=5))
    first, second = trajectory.steps
    assert trajectory.solved and trajectory.solution_step == 1
    assert (
        not first.report.passed
        and first.review.verdict == "refine"
        and first.review.confidence == 0.8
    )
    assert second.kind == "refine" and second.parent == 0
    prompt = second.messages[-1].content
    assert "return a * b" in prompt and "AssertionError" in prompt and "it should add" in prompt
    assert (
        trajectory.tokens
        == sum(s.prompt_tokens + s.completion_tokens for s in trajectory.steps)
        > 0
    )


def test_refine_stops_on_the_candidate_budget(task, sandbox, scripted):
    model = scripted(WRONG, REFINE, WRONG, REFINE, WRONG)
    trajectory = repair_task(task, model, sandbox, "refine", Budget(max_candidates=2))
    assert trajectory.outcome == "budget" and trajectory.solution_step is None
    assert len(trajectory.steps) == 2 and model.calls == [
        1,
        1,
        1,
    ]  # no review after the last candidate
    assert "candidate budget" in trajectory.metadata["stop_reason"]


def test_refine_stops_on_the_token_budget(task, sandbox, scripted):
    model = scripted(WRONG, REFINE, GOOD)
    trajectory = repair_task(
        task, model, sandbox, "refine", Budget(max_candidates=8, max_tokens=10)
    )
    assert trajectory.outcome == "budget" and len(trajectory.steps) == 1
    assert "token budget" in trajectory.metadata["stop_reason"]


def test_reviewer_accepting_a_failing_candidate_is_an_error_and_the_loop_goes_on(
    task, sandbox, scripted
):
    model = scripted(WRONG, ACCEPT, GOOD)
    trajectory = repair_task(task, model, sandbox, "refine", Budget(max_candidates=5))
    assert trajectory.steps[0].reviewer_error and trajectory.steps[0].review.verdict == "accept"
    assert trajectory.solved and trajectory.solution_step == 1


def test_a_reply_without_code_is_a_failed_step_not_a_crash(task, sandbox, scripted):
    model = scripted("I am not sure what to do.", GOOD)
    trajectory = repair_task(task, model, sandbox, "refine", Budget(max_candidates=5))
    assert (
        trajectory.steps[0].error == "no code in the reply"
        and trajectory.steps[0].candidate is None
    )
    assert (
        trajectory.steps[1].kind == "solve" and trajectory.solved
    )  # no code to refine: solve again


def test_an_unparseable_review_means_refine_with_low_confidence(task, sandbox, scripted):
    model = scripted(WRONG, "hmm, hard to say", GOOD)
    trajectory = repair_task(task, model, sandbox, "refine", Budget(max_candidates=5))
    review = trajectory.steps[0].review
    assert (
        review.verdict == "refine"
        and review.confidence <= 0.1
        and "could not be parsed" in review.critique
    )
    assert trajectory.solved


def test_a_reply_cut_at_the_token_limit_is_recorded_and_shown(task, sandbox, tmp_path):
    replies = tmp_path / "cut.json"
    replies.write_text(json.dumps([WRONG, REFINE, GOOD]))
    trajectory = repair_task(
        task, TruncatingModel(replies), sandbox, "refine", Budget(max_candidates=2)
    )
    first, second = trajectory.steps
    assert first.finish_reason == first.review_finish_reason == second.finish_reason == "length"
    assert result_row(trajectory)["truncated_replies"] == 2
    assert "[reply cut at the token limit]" in describe_step(first)


def test_replies_that_ended_are_recorded_as_such(task, sandbox, scripted):
    trajectory = repair_task(
        task, scripted(WRONG, REFINE, GOOD), sandbox, "refine", Budget(max_candidates=2)
    )
    assert [s.finish_reason for s in trajectory.steps] == ["stop", "stop"]
    assert (
        trajectory.steps[0].review_finish_reason == "stop"
        and result_row(trajectory)["truncated_replies"] == 0
    )


def test_every_model_call_gets_what_is_left_of_the_time_budget(task, sandbox, scripted):
    """The solver's, the reviewer's and the refiner's calls are each given what is left of
    --max-seconds as their timeout (before, none was given one)."""
    model = scripted(WRONG, REFINE, GOOD)
    trajectory = repair_task(task, model, sandbox, "refine", Budget(max_seconds=600))
    assert trajectory.solved and len(model.timeouts) == 3
    assert all(t is not None and 0 < t <= 600 for t in model.timeouts)
    assert model.timeouts == sorted(model.timeouts, reverse=True)  # time only runs out


def test_a_review_the_time_budget_cuts_ends_the_task_as_time_spent(task, sandbox, tmp_path):
    """A reviewer that would take 600 s is cut when the task's time runs out: the half review is
    no verdict, its tokens count, and the task ends as "time budget spent", not as an error."""
    replies = tmp_path / "slow-review.json"
    replies.write_text(json.dumps([WRONG, {"reply": ACCEPT, "seconds": 600}, GOOD]))
    started = time.monotonic()
    trajectory = repair_task(
        task, load_model(f"scripted:{replies}"), sandbox, "refine", Budget(max_seconds=8)
    )
    assert time.monotonic() - started < 150  # far from the 600 s the review would take
    assert trajectory.outcome == "budget" and trajectory.error == ""
    assert trajectory.metadata["stop_reason"].startswith("time budget spent")
    [step] = trajectory.steps
    assert step.review_finish_reason == "time" and step.review.verdict == "refine"
    assert "time budget ran out" in step.review.critique
    # The review's prompt is counted beside the solver's (the scripted model counts words).
    words = sum(len(m.content.split()) for m in step.messages + step.review_messages)
    assert step.review_messages and step.prompt_tokens == words


def test_a_model_error_ends_the_task_with_outcome_error(task, sandbox, scripted):
    model = scripted(WRONG)  # runs out of replies at the review
    trajectory = repair_task(task, model, sandbox, "refine", Budget(max_candidates=5))
    assert trajectory.outcome == "error" and "ran out of replies" in trajectory.error
    assert len(trajectory.steps) == 1 and trajectory.steps[0].report is not None


def test_best_of_n_samples_in_one_batched_call_and_executes_all(task, sandbox, scripted):
    model = scripted(WRONG, "no code", GOOD, WRONG)
    trajectory = repair_task(
        task, model, sandbox, "best-of-n", Budget(max_candidates=4), sampling=Sampling(samples=4)
    )
    assert model.calls == [4]
    assert [s.kind for s in trajectory.steps] == ["sample"] * 4
    assert [s.report is not None for s in trajectory.steps] == [True, False, True, True]
    assert trajectory.solved and trajectory.solution_step == 2
    assert (
        trajectory.steps[0].prompt_tokens > 0 and trajectory.steps[1].prompt_tokens == 0
    )  # prompt counted once


def test_best_of_n_asks_the_reviewer_only_to_break_a_tie_between_passing_candidates(
    task, sandbox, scripted
):
    doubtful = "VERDICT: refine\nCONFIDENCE: 0.9\nCRITIQUE: sum() of a list is roundabout"
    model = scripted(GOOD, WRONG, ALSO_GOOD, ACCEPT.replace("0.9", "0.3"), doubtful)
    trajectory = repair_task(
        task, model, sandbox, "best-of-n", Budget(max_candidates=3), sampling=Sampling(samples=3)
    )
    assert model.calls == [3, 1, 1]
    assert trajectory.steps[1].review is None  # the failing one is out of the running
    assert trajectory.solution_step == 0  # belief 0.3 beats belief 0.1


def test_best_of_n_samples_again_while_budget_is_left(task, sandbox, scripted):
    model = scripted(WRONG, WRONG, GOOD, WRONG)
    trajectory = repair_task(
        task, model, sandbox, "best-of-n", Budget(max_candidates=4), sampling=Sampling(samples=2)
    )
    assert model.calls == [2, 2] and trajectory.solution_step == 2


def test_tree_search_records_parents_and_values(task, sandbox, scripted):
    half = "```python\ndef add(a, b):\n    return a + b if a != 2 else 0\n```"
    model = scripted(WRONG, REFINE, half, REFINE, GOOD)
    trajectory = repair_task(task, model, sandbox, "tree", Budget(max_candidates=5))
    assert trajectory.solved
    kinds = [(s.kind, s.parent) for s in trajectory.steps]
    assert kinds[0] == ("solve", None) and all(kind == "expand" for kind, _ in kinds[1:])
    assert all(parent is not None for _, parent in kinds[1:])
    assert all(s.value is not None for s in trajectory.steps)
    # Tests weigh 0.7, the reviewer's belief 0.3: a failing, doubted node is worth 0.3 * 0.2.
    assert trajectory.steps[0].value == pytest.approx(0.06)


def test_tree_expands_the_node_with_the_best_uct_score(task, sandbox, scripted):
    # The root's child is valued far above the root, so the next expansion refines the child.
    confident = "VERDICT: accept\nCONFIDENCE: 1.0\nCRITIQUE: fine"
    model = scripted(WRONG, REFINE, WRONG.replace("*", "**"), confident, GOOD)
    trajectory = repair_task(
        task, model, sandbox, "tree", Budget(max_candidates=3), sampling=Sampling(exploration=0.1)
    )
    assert [s.parent for s in trajectory.steps] == [None, 0, 1]


def test_every_step_is_saved_as_it_lands(task, sandbox, scripted, tmp_path):
    model = scripted(WRONG, REFINE, GOOD)
    seen = []
    with TrajectoryStore(tmp_path / "run.sqlite") as store:
        trajectory = repair_task(
            task,
            model,
            sandbox,
            "refine",
            Budget(),
            store,
            on_step=lambda t: seen.append(store.get(t.trajectory_id)),
        )
        assert store.get(trajectory.trajectory_id) == trajectory
    # solve, execute, review, refine, execute (which closes the episode: no finish node after it)
    assert [len(t.steps) for t in seen] == [1, 1, 1, 2, 2]
    assert [t.outcome for t in seen] == ["running"] * 4 + ["solved"]


def test_the_trajectory_round_trips_through_the_checkpointer(task, sandbox, scripted, tmp_path):
    model = scripted(WRONG, REFINE, GOOD)
    checkpointer = open_checkpointer(TrajectoryStore(tmp_path))
    trajectory = repair_task(task, model, sandbox, "refine", checkpointer=checkpointer)
    graph = repair.builder.compile(checkpointer=checkpointer)
    state = graph.get_state({"configurable": {"thread_id": "add"}}).values
    restored = state["trajectory"]
    assert restored == trajectory and type(restored.steps[0].report).__name__ == "TestReport"
    assert state["task"] == task  # a Task again, not the bare dict of a type the serializer blocked
    # Asking again for a finished task returns it without a model call.
    again = repair_task(task, scripted(), sandbox, "refine", checkpointer=checkpointer)
    assert again == trajectory


def test_every_type_the_graphs_checkpoint_is_on_the_serializers_allow_list():
    kinds = typing.get_type_hints(RepairState).values()  # NotRequired is dropped
    assert {(kind.__module__, kind.__name__) for kind in kinds} == set(CHECKPOINTED_TYPES)
    for builder in (repair.builder, search.best_of_n_builder, search.tree_builder, issue.builder):
        assert builder.state_schema is RepairState


@pytest.mark.parametrize(
    "name, graph",
    [("repair", repair.graph), ("best-of-n", search.best_of_n_graph), ("tree", search.tree_graph)],
)
def test_graph_shape_matches_the_snapshot(name, graph):
    drawn = graph.get_graph().draw_mermaid()
    snapshot = SNAPSHOTS / f"{name}.mmd"
    if os.environ.get("UPDATE_SNAPSHOTS"):
        snapshot.write_text(drawn)
    assert drawn == snapshot.read_text(), (
        f"graph {name} changed shape; rerun with UPDATE_SNAPSHOTS=1 if intended"
    )


def test_results_count_the_lines_a_candidate_changes_beyond_the_reference_fix(
    task, sandbox, scripted
):
    task = task.model_copy(update={"metadata": {"solution": "def add(a, b):\n    return a + b\n"}})
    # A fix that takes three changed lines where the reference takes two, and a wrong one-liner.
    wordy = "```python\ndef add(a, b):\n    total = a + b\n    return total\n```"
    model = scripted(WRONG, wordy)
    trajectory = repair_task(
        task, model, sandbox, "best-of-n", Budget(max_candidates=2), sampling=Sampling(samples=2)
    )
    row = result_row(trajectory)
    assert trajectory.solved and row["lines_beyond_reference"] == 1
    assert (
        row["candidate_lines_beyond_reference"] == 0.5
    )  # the wrong one changes as much as the reference
    summary = summarize(
        [
            row,
            result_row(
                trajectory.model_copy(update={"task": task.model_copy(update={"metadata": {}})})
            ),
        ]
    )
    assert (
        summary["lines_beyond_reference"] == 1
        and summary["candidate_lines_beyond_reference"] == 0.5
    )


def test_the_checkpointer_writes_through_the_stores_connection_and_lock(tmp_path):
    """Two connections to run.sqlite met at SQLite's file lock, where the loser sleeps in the
    busy handler; one connection and one lock make the node's save and LangGraph's checkpoint
    write take turns."""
    with TrajectoryStore(tmp_path) as store:
        checkpointer = open_checkpointer(store)
        assert checkpointer.conn is store.connection and checkpointer.lock is store.lock
        assert checkpointer.get_tuple({"configurable": {"thread_id": "none"}}) is None


def test_a_runs_checkpointer_saves_each_node_to_the_store_with_its_checkpoint(
    task, sandbox, scripted, tmp_path, monkeypatch
):
    """Each node's trajectory reaches the store once, written with the node's checkpoint in
    LangGraph's writer thread and in its transaction: the run's own thread saves nothing, so
    its saves never wait on the checkpoint writes, a node costs one commit fewer, and after a
    kill the store and the checkpoint hold the same nodes."""
    import threading

    saves = []
    real = TrajectoryStore.stage

    def recorded(self, trajectory):
        saves.append((threading.current_thread() is threading.main_thread(), trajectory))
        real(self, trajectory)

    monkeypatch.setattr(TrajectoryStore, "stage", recorded)
    statements = []
    with TrajectoryStore(tmp_path) as store:
        checkpointer = open_checkpointer(store)
        store.connection.set_trace_callback(statements.append)
        trajectory = repair_task(
            task,
            scripted(WRONG, REFINE, GOOD),
            sandbox,
            "refine",
            store=store,
            checkpointer=checkpointer,
        )
        assert trajectory.solved and store.get(trajectory.trajectory_id) == trajectory
    # solve, execute, review, refine, execute (closing): one save each, none on the run's thread
    assert [len(t.steps) for _, t in saves] == [1, 1, 1, 2, 2]
    assert not any(on_main for on_main, _ in saves)
    # Each row is committed with the checkpoint that follows it, in one transaction.
    transactions = " ".join(statements).split("COMMIT")
    with_rows = [t for t in transactions if "INTO trajectories" in t]
    assert len(with_rows) == 5 and all("INTO checkpoints" in t for t in with_rows)
