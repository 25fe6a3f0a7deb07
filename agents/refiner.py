"""The refiner (CYCLE-style): a new candidate from the specification, the faulty code, its
test feedback and the reviewer's critique."""

from __future__ import annotations

from collections.abc import Sequence

from selfrepair.agents.feedback import describe_report
from selfrepair.agents.models.protocol import Model
from selfrepair.agents.prompts import render
from selfrepair.agents.solver import shown_code, steps_from_generation, system_message

from selfrepair.settings import Feedback, Prompts
from selfrepair.types import Message, Step, StepKind, Task


def refine(
    model: Model,
    task: Task,
    parent: Step,
    *,
    first_index: int,
    n: int = 1,
    temperature: float = 0.8,
    max_tokens: int = 512,
    stop: Sequence[str] | None = None,
    kind: StepKind = "refine",
    seed: int | None = None,
    prompts: Prompts | None = None,
    feedback: Feedback | None = None,
    timeout: float | None = None,
) -> list[Step]:
    """n children of `parent`, a step whose candidate was executed and failed, from one
    model call of at most `timeout` seconds."""
    if parent.candidate is None or parent.report is None:
        raise ValueError(f"step {parent.index} has no executed candidate to refine")
    base = task.files | parent.candidate.files
    path, code = shown_code(task, base, parent.candidate)
    prompts = prompts or Prompts()
    prompt = render(
        "refine",
        prompts.refine,
        spec=task.spec.strip(),
        path=path,
        code=code,
        feedback=describe_report(parent.report, feedback),
        critique=parent.review.critique.strip() if parent.review else "",
    )
    messages = [system_message(prompts), Message(role="user", content=prompt)]
    generation = model.generate(
        messages,
        n=n,
        temperature=temperature,
        max_tokens=max_tokens,
        stop=stop,
        seed=seed,
        timeout=timeout,
    )
    return steps_from_generation(
        generation,
        messages,
        task,
        base,
        kind=kind,
        first_index=first_index,
        parent=parent.index,
        seed=seed,
    )
