"""The placebo's training data: replies of the same form and length as the repairs a round
learned from, with no repair signal in them.

For every SFT example of the real arm (a prompt showing buggy code, a reply with the fixed
function) the placebo has one made from the same task: the prompt as sent, with every code
block in it replaced by the task's correct function, and the reply as the model wrote it, with
its code block replaced by that same correct function. The input is already correct and the
reply restates it, so the mapping the placebo teaches is the identity: nothing about finding or
fixing a bug. What it shares with the real data is everything else: the prompt template and
spec, the functions (the correct versions the real replies converge on), the number of
examples, and the reply's form and length (one fenced compact function, then stop; the real
reply differs from the correct function by the bug's few tokens at most). A gain the placebo
also shows is a gain in form; only the real arm's gain beyond it is learning to repair.

Why not the buggy function echoed: that teaches "leave the bug", a signal against repair, so
the real arm would beat it without having learned anything (a placebo must be inert).
"""

from __future__ import annotations

import re

from datasets import DatasetDict
from selfrepair.training.datasets import split_by_task

from selfrepair.errors import SelfRepairError
from selfrepair.types import Task

BLOCK = re.compile(r"```(?:python|py)?\n.*?(?:\n```|$)", re.DOTALL)


def restate(text: str, code: str) -> tuple[str, int]:
    """`text` with every fenced code block holding `code` instead; and how many there were.
    A block left open (a reply cut at its stop string, the closing fence) stays open."""
    opened = "```python\n" + code.strip("\n")
    return BLOCK.subn(lambda m: opened + ("\n```" if m.group().endswith("```") else ""), text)


def placebo_rows(rows: list[dict], tasks: dict[str, Task]) -> list[dict]:
    """One placebo example per SFT example (training.datasets.sft_rows), as the module's
    docstring says. Every task needs its correct function (`metadata["solution"]`)."""
    placebo = []
    for row in rows:
        task = tasks.get(row["task_id"])
        solution = task.metadata.get("solution") if task else None
        if not isinstance(solution, str) or not solution.strip():
            raise SelfRepairError(
                f"task {row['task_id']}: no correct function recorded (metadata['solution']): "
                "the placebo restates it"
            )
        *prompt, reply = row["messages"]
        messages = []
        for message in prompt:
            content = message["content"]
            if message["role"] == "user":
                content, count = restate(content, solution)
                if count == 0:
                    raise SelfRepairError(
                        f"task {row['task_id']}: the prompt shows no code block to restate"
                    )
            messages.append({**message, "content": content})
        content, count = restate(reply["content"], solution)
        if count == 0:  # a reply that was bare code: the code is the reply
            content = solution
        messages.append({**reply, "content": content})
        placebo.append({"messages": messages, "task_id": row["task_id"], "kind": "placebo"})
    return placebo


def placebo_dataset(rows: list[dict], tasks: dict[str, Task]) -> DatasetDict:
    """The placebo rows as training data: all of it `train` (the eval sets are held out)."""
    if not rows:
        raise SelfRepairError("no SFT examples to match: the placebo has nothing to mirror")
    return split_by_task(placebo_rows(rows, tasks), 0.0)
