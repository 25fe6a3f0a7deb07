"""The solver: a task's first candidates, from its specification, its code and (when the
caller ran them) the failing tests of the code as given."""

from __future__ import annotations

from collections.abc import Sequence

from selfrepair.agents.code.extract import ExtractionError, extract_candidate
from selfrepair.agents.feedback import describe_report
from selfrepair.agents.models.protocol import Generation, Model
from selfrepair.agents.prompts import render

from selfrepair.settings import Feedback, Prompts
from selfrepair.types import Candidate, Message, Step, StepKind, Task, TestReport


def shown_code(
    task: Task, base: dict[str, str], candidate: Candidate | None = None
) -> tuple[str, str]:
    """(path label, code) to put in a prompt: the files a candidate changed, else the entry
    file, else every Python file (every file when there is none), each headed by its path
    when there are several."""
    if candidate is not None:
        paths = sorted(candidate.files)
    elif task.entry_file:
        paths = [task.entry_file]
    else:
        paths = sorted(p for p in base if p.endswith(".py")) or sorted(base)
    if len(paths) == 1:
        return paths[0], base[paths[0]].rstrip()
    return ", ".join(paths), "\n\n".join(f"# file: {p}\n{base[p].rstrip()}" for p in paths)


def system_message(prompts: Prompts | None = None) -> Message:
    return Message(role="system", content=render("system", (prompts or Prompts()).system))


def steps_from_generation(
    generation: Generation,
    messages: list[Message],
    task: Task,
    base: dict[str, str],
    *,
    kind: StepKind,
    first_index: int,
    parent: int | None = None,
    seed: int | None = None,
) -> list[Step]:
    """One step per completion. The prompt was processed once, so its tokens go to the first
    step; the call's seconds are shared out evenly."""
    steps = []
    share = generation.seconds / max(len(generation.completions), 1)
    for offset, completion in enumerate(generation.completions):
        step = Step(
            index=first_index + offset,
            kind=kind,
            parent=parent,
            messages=messages,
            completion=completion.text,
            prompt_tokens=generation.prompt_tokens if offset == 0 else 0,
            completion_tokens=completion.completion_tokens,
            finish_reason=completion.finish_reason,
            seed=seed,
            model_seconds=share,
        )
        if completion.finish_reason == "time":
            # Half a reply, and no time left to test it: recorded, never a candidate.
            step.error = "reply cut when the time budget ran out"
            steps.append(step)
            continue
        try:
            step.candidate = extract_candidate(
                completion.text,
                task.files,
                base,
                task.entry_file,
                in_scope=task.metadata.get("in_scope", ()),
            )
        except ExtractionError as error:
            step.error = str(error)
        steps.append(step)
    return steps


def solve_messages(
    task: Task,
    baseline: TestReport | None = None,
    prompts: Prompts | None = None,
    feedback: Feedback | None = None,
) -> list[Message]:
    """The solver's prompt for a task (training.grpo trains on it too), in `prompts`'
    templates (the shipped ones by default)."""
    prompts = prompts or Prompts()
    path, code = shown_code(task, task.files)
    failing = baseline is not None and not baseline.passed
    prompt = render(
        "solve",
        prompts.solve,
        spec=task.spec.strip(),
        path=path,
        code=code,
        feedback=describe_report(baseline, feedback) if failing else "",
        generate=task.metadata.get("mode") == "generate",
    )
    return [system_message(prompts), Message(role="user", content=prompt)]


def solve(
    model: Model,
    task: Task,
    *,
    first_index: int,
    n: int = 1,
    temperature: float = 0.0,
    max_tokens: int = 512,
    stop: Sequence[str] | None = None,
    baseline: TestReport | None = None,
    kind: StepKind = "solve",
    seed: int | None = None,
    prompts: Prompts | None = None,
    feedback: Feedback | None = None,
    timeout: float | None = None,
) -> list[Step]:
    """n first candidates from one (batched) model call of at most `timeout` seconds."""
    messages = solve_messages(task, baseline, prompts, feedback)
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
        generation, messages, task, task.files, kind=kind, first_index=first_index, seed=seed
    )
