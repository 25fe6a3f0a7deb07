"""The label-free mode: calls the model writes, candidates run on them in the sandbox, the
vote, and training data from the vote; the task's tests never run."""

from __future__ import annotations

import json

import pytest
from conftest import operator_reply, operator_task
from selfrepair.agents.models.backends import load_model
from selfrepair.agents.tester import (
    calls_in,
    function_name,
    inputs_messages,
    signature,
    under_repair,
)
from selfrepair.graphs.consensus import ORIGINAL, choose, label_steps
from selfrepair.graphs.run import repair_task
from selfrepair.sandbox.choose import open_sandbox
from selfrepair.training.datasets import Sources, dpo_rows, sft_rows

from selfrepair.metrics import result_row
from selfrepair.settings import Budget, Sampling, Voting
from selfrepair.types import Task, TestSpec


@pytest.fixture(scope="module")
def sandbox():
    box = open_sandbox("local")
    yield box
    box.close()


class NoTests:
    """A sandbox that runs commands but refuses to judge: a test run would fail the test."""

    def __init__(self, sandbox) -> None:
        self.sandbox = sandbox
        self.name = sandbox.name
        self.commands: list[list[str]] = []

    def execute(self, workspace, command, **options):
        self.commands.append(list(command))
        return self.sandbox.execute(workspace, command, **options)

    def judge(self, *args, **options):
        raise AssertionError("the label-free graph ran the task's tests")


def test_calls_are_kept_only_with_literal_arguments():
    reply = (
        "Here are tests:\n```python\nf(1, 2)\nprint(f(3, 4))\nassert f(5, 6) == 11\nf(x, 2)\nf(open('/etc/passwd'), 1)\n"
        "f(*[1, 2])\nf([1, 2], key='a')\nf(1, 2)\ng(1, 2)\nf(1, f(2, 3))\n```"
    )
    # f(1, f(2, 3)) is not all literals, but the call inside it is.
    assert calls_in(reply, "f", limit=10) == [
        "f(1, 2)",
        "f(3, 4)",
        "f(5, 6)",
        "f([1, 2], key='a')",
        "f(2, 3)",
    ]
    assert calls_in(reply, "f", limit=2) == ["f(1, 2)", "f(3, 4)"]
    assert calls_in("f(7, 8)", "f", limit=5) == ["f(7, 8)"]  # no fence: the whole reply
    assert calls_in("```python\nf(1,\n```", "f", limit=5) == []


def test_the_function_under_repair_is_found_in_the_entry_file():
    task = operator_task("add")
    assert function_name(task) == "f"  # its only function (the entry point is not set)
    two = task.model_copy(
        update={
            "files": {"add.py": "def g(x):\n    return x\n\ndef f(a, b):\n    return g(a) - b\n"}
        }
    )
    assert function_name(two) is None
    assert function_name(two.model_copy(update={"entry_point": "f"})) == "f"


def test_the_calls_are_asked_for_from_the_signature_and_the_spec_not_the_code():
    task = operator_task("add").model_copy(
        update={
            "files": {"add.py": "def f(a: int, b: int = 2, *rest: int) -> int:\n    return a - b\n"}
        }
    )
    assert signature(under_repair(task)) == "f(a, b=2, *rest)"
    (message,) = inputs_messages(task, under_repair(task), 5)
    assert message.content.startswith("The Python function `f(a, b=2, *rest)`: Return a add b.")
    assert "return a - b" not in message.content  # shown code, a small model writes code back


def test_the_vote_needs_a_confident_majority_that_changes_behaviour():
    voting = Voting(min_votes=2, min_share=0.5)
    original = ["= -1", "= -1"]
    fix, other = ["= 3", "= 7"], ["= 2", "= 12"]
    chosen = choose({ORIGINAL: original, "0": fix, "1": fix, "2": other}, 4, voting)
    assert chosen["label_steps"] == [0, 1] and chosen["confidence"] == 0.5
    # Candidates that behave like the code as given are no fix, however many agree.
    assert (
        choose({ORIGINAL: original, "0": original, "1": original, "2": fix}, 3, voting)[
            "label_steps"
        ]
        == []
    )
    # Failing on every call is no behaviour to agree on.
    crash = ["raise TypeError", "raise TypeError"]
    assert choose({ORIGINAL: original, "0": crash, "1": crash}, 2, voting)["label_steps"] == []
    tie = choose({ORIGINAL: original, "0": fix, "1": fix, "2": other, "3": other}, 4, voting)
    assert tie["label_steps"] == [] and "tie" in tie["reason"]
    lonely = choose({ORIGINAL: original, "0": fix, "1": other, "2": ["= 0", "= 0"]}, 3, voting)
    assert lonely["label_steps"] == [] and "no confident majority" in lonely["reason"]
    assert (
        choose({ORIGINAL: original, "0": fix, "1": fix}, 5, voting)["label_steps"] == []
    )  # 2 of 5 is too few


def run_label_free(
    task: Task, replies: list[str], sandbox, tmp_path, samples: int = 3, voting: Voting = Voting()
):
    path = tmp_path / f"{task.task_id}.json"
    path.write_text(json.dumps(replies))
    return repair_task(
        task,
        load_model(f"scripted:{path}"),
        sandbox,
        "self-consistency",
        Budget(max_candidates=samples),
        sampling=Sampling(seed=5, voting=voting),
    )


def test_the_majority_behaviour_becomes_the_label_and_no_test_runs(sandbox, tmp_path):
    box = NoTests(sandbox)
    task = operator_task("add")  # f(a, b) returns a - b; the spec asks for the sum
    asked = [
        "```python\nf(1, 2)\nf(3, 4)\nf(x)\n```",
        "Example usage:\n```python\nprint(f(3, 4))\n```",
    ]
    replies = [operator_reply("+"), operator_reply("*"), operator_reply("+"), *asked]
    trajectory = run_label_free(task, replies, box, tmp_path, voting=Voting(asks=2))
    assert [s.kind for s in trajectory.steps] == ["sample"] * 3 + ["inputs"] * 2
    assert all(step.report is None for step in trajectory.steps)  # nothing was judged
    consensus = trajectory.metadata["consensus"]
    assert consensus["calls"] == ["f(1, 2)", "f(3, 4)"]
    assert consensus["behaviour"] == {
        ORIGINAL: ["= -1", "= -1"],
        "0": ["= 3", "= 7"],
        "1": ["= 2", "= 12"],
        "2": ["= 3", "= 7"],
    }
    assert [s.index for s in label_steps(trajectory)] == [0, 2] and consensus[
        "confidence"
    ] == pytest.approx(2 / 3)
    assert trajectory.outcome == "budget" and "no tests run" in trajectory.metadata["stop_reason"]
    assert (
        len(box.commands) == 4
    )  # the code as given and three candidates, each run once on the calls
    assert trajectory.steps[0].seed == Sampling(seed=5).call_seed(
        "add", 0
    )  # the samples' call was seeded
    assert result_row(trajectory)["samples"] == 3  # the inputs call is no sample

    # Training data from the vote: the chosen reply (deduplicated), preferred over the other one.
    sources = Sources([trajectory])
    (row,) = sft_rows(sources.trajectories, labels="consensus")
    assert row["messages"][-1]["content"] == operator_reply("+") and row["kind"] == "sample"
    (pair,) = dpo_rows(sources.trajectories, labels="consensus")
    assert pair["chosen"][0]["content"] == operator_reply("+") and pair["rejected"][0][
        "content"
    ] == operator_reply("*")
    # With the tests as labels, a label-free trajectory teaches nothing: no verdict exists.
    assert sft_rows(sources.trajectories, labels="tests") == []


def test_no_label_without_calls_to_run(sandbox, tmp_path):
    task = operator_task("sub")
    replies = [
        operator_reply("-"),
        operator_reply("-"),
        operator_reply("-"),
        "I cannot write tests.",
    ]
    trajectory = run_label_free(task, replies, NoTests(sandbox), tmp_path)
    assert label_steps(trajectory) == [] and trajectory.steps[-1].error.startswith("no call of f")
    assert trajectory.metadata["consensus"]["reason"] == "no calls to run the candidates on"
    assert sft_rows([trajectory], labels="consensus") == []


def test_a_candidate_that_hangs_or_crashes_votes_for_nothing(sandbox, tmp_path):
    task = Task(
        task_id="loop",
        spec="Return a plus b.",
        files={"loop.py": "def f(a, b):\n    return a - b\n"},
        entry_file="loop.py",
        tests=TestSpec(kind="script", files={"test_loop.py": "assert f(1, 2) == 3\n"}),
    )
    hang = "```python\ndef f(a, b):\n    while True:\n        pass\n```"
    crash = "```python\ndef f(a, b):\n    return a + c\n```"
    replies = [hang, crash, hang, "```python\nf(1, 2)\n```"]
    path = tmp_path / "loop.json"
    path.write_text(json.dumps(replies))
    trajectory = repair_task(
        task,
        load_model(f"scripted:{path}"),
        NoTests(sandbox),
        "self-consistency",
        Budget(max_candidates=3),
        sampling=Sampling(voting=Voting(call_seconds=0.5)),
    )
    behaviour = trajectory.metadata["consensus"]["behaviour"]
    assert behaviour["0"] == ["timeout"] and behaviour["1"] == ["raise NameError"]
    assert label_steps(trajectory) == []
