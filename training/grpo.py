"""GRPO with an execution reward (experimental): TRL's GRPOTrainer samples replies to the
solver's prompt for each task, and the reward of a reply is the fraction of the task's tests
its candidate passes in the sandbox (0 for a reply with no code).

Experimental: it works end to end (a CPU smoke run trains two steps on SmolLM2), but no
setting has yet been shown to raise a repair rate here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from datasets import DatasetDict
from selfrepair.agents.code.extract import ExtractionError, extract_candidate
from selfrepair.agents.solver import solve_messages
from selfrepair.sandbox.core import Sandbox
from selfrepair.sandbox.testing import run_tests
from selfrepair.training.datasets import chat, split_by_task

from selfrepair.errors import SelfRepairError
from selfrepair.types import Task

RewardFunction = Callable[..., list[float]]


def reply_text(completion: Any) -> str:
    """A completion as TRL passes it: plain text, or (conversational) a list of messages."""
    if isinstance(completion, str):
        return completion
    return "".join(
        message["content"] for message in completion if message.get("role") == "assistant"
    )


def execution_reward(sandbox: Sandbox) -> RewardFunction:
    """The reward function `(completions, task, **kwargs) -> list[float]`: each reply's
    candidate is run against its task's tests; the reward is the fraction that pass."""

    def tests_passed(completions: list[Any], task: list[str], **kwargs: Any) -> list[float]:
        rewards = []
        for completion, task_json in zip(completions, task, strict=True):
            repair = Task.model_validate_json(task_json)
            try:
                candidate = extract_candidate(
                    reply_text(completion),
                    repair.files,
                    repair.files,
                    repair.entry_file,
                    in_scope=repair.metadata.get("in_scope", ()),
                )
            except ExtractionError:
                rewards.append(0.0)
                continue
            rewards.append(run_tests(sandbox, repair, candidate).fraction_passed)
        return rewards

    return tests_passed


def grpo_dataset(tasks: list[Task], eval_fraction: float = 0.0) -> DatasetDict:
    """One row per task: the solver's prompt and the task itself (JSON), split by task."""
    if not tasks:
        raise SelfRepairError("no tasks to train on")
    repository_tasks = [task.task_id for task in tasks if task.repo]
    if repository_tasks:
        raise SelfRepairError(
            f"GRPO takes self-contained tasks, not repository tasks ({', '.join(repository_tasks[:3])})"
        )
    rows = [
        {
            "prompt": chat(solve_messages(task)),
            "task": task.model_dump_json(),
            "task_id": task.task_id,
        }
        for task in tasks
    ]
    return split_by_task(rows, eval_fraction)
