"""The placebo's data: the real arm's examples, one for one, in the same form and length,
with the bug gone from the prompt so the reply restates its input."""

from __future__ import annotations

import re

import pytest
from conftest import OPERATOR_TASKS, operator_task
from selfrepair.training.datasets import read_runs, sft_rows
from selfrepair.training.placebo import placebo_dataset, placebo_rows

from selfrepair.errors import SelfRepairError


def solved_tasks() -> dict:
    return {
        name: operator_task(name).model_copy(
            update={"metadata": {"solution": f"def f(a, b):\n    return a {fixed} b\n"}}
        )
        for name, (_, fixed, _, _) in OPERATOR_TASKS.items()
    }


def code_blocks(text: str) -> list[str]:
    return [block.strip() for block in re.findall(r"```python\n(.*?)(?:\n```|$)", text, re.DOTALL)]


def test_each_real_example_has_a_placebo_of_its_form_with_no_repair_in_it(scripted_run):
    tasks = solved_tasks()
    rows = sft_rows(read_runs([scripted_run]).trajectories)
    placebo = placebo_rows(rows, tasks)
    assert len(placebo) == len(rows) == 12  # the same number of examples
    assert {r["kind"] for r in rows} == {"sample", "refine"}  # first tries and refinements
    for real, fake in zip(rows, placebo, strict=True):
        name = real["task_id"]
        buggy = OPERATOR_TASKS[name][0]
        solution = tasks[name].metadata["solution"].strip()
        real_prompt, fake_prompt = real["messages"][-2]["content"], fake["messages"][-2]["content"]
        fake_reply = fake["messages"][-1]["content"]
        # the prompt is the one sent, its code (the bug, or a wrong attempt) now correct
        wrong = buggy if real["kind"] == "sample" else OPERATOR_TASKS[name][2]
        assert f"return a {wrong} b" in real_prompt and f"return a {wrong} b" not in fake_prompt
        assert code_blocks(fake_prompt) and set(code_blocks(fake_prompt)) == {solution}
        assert re.sub(r"```python\n.*?\n```", "", real_prompt, flags=re.DOTALL) == re.sub(
            r"```python\n.*?\n```", "", fake_prompt, flags=re.DOTALL
        )
        # the reply restates the input: the identity, in the real reply's form and length
        assert code_blocks(fake_reply) == [solution]
        assert fake_reply.endswith("```") == real["messages"][-1]["content"].endswith("```")
        assert abs(len(fake_reply) - len(real["messages"][-1]["content"])) <= 2
        assert fake["messages"][0] == real["messages"][0]  # the system prompt
    data = placebo_dataset(rows, tasks)
    assert len(data["train"]) == len(rows) and len(data["test"]) == 0


def test_an_open_block_stays_open_and_a_task_without_its_solution_is_refused(scripted_run):
    tasks = solved_tasks()
    row = sft_rows(read_runs([scripted_run]).trajectories)[0]
    cut = row | {
        "messages": row["messages"][:-1]
        + [{"role": "assistant", "content": "```python\ndef f(a, b):\n    return a"}]
    }
    reply = placebo_rows([cut], tasks)[0]["messages"][-1]["content"]
    assert not reply.endswith("```") and code_blocks(reply) == [
        tasks[row["task_id"]].metadata["solution"].strip()
    ]
    bare = {name: operator_task(name) for name in OPERATOR_TASKS}
    with pytest.raises(SelfRepairError, match="no correct function recorded"):
        placebo_rows([row], bare)
    with pytest.raises(SelfRepairError, match="nothing to mirror"):
        placebo_dataset([], tasks)
