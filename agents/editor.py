"""The editor: the agent that resolves an issue in a repository.

It works in a private checkout of the base commit (agents.code.repo). Each turn it ranks the
repository's definitions against the issue and its traceback (agents.code.localise), shows the
model the issue, the repository map and the most relevant code, and turns the SEARCH/REPLACE
edits of the reply (agents.code.edits) into a candidate diff against the base. Edits that do not
apply exactly, break the syntax or undo every change become the step's error instead, and
the next turn shows the model what went wrong, untested.

The first turn sees the issue and how the tests fail at the base. A later one builds on the
latest tested candidate (its diff is applied to the checkout the model reads), with its test
feedback and the reviewer's critique, or with the problems of the edits that did not apply.
"""

from __future__ import annotations

from selfrepair.agents.code import localise
from selfrepair.agents.code.edits import FORMAT_HELP, apply_edits
from selfrepair.agents.code.repo import Checkout
from selfrepair.agents.feedback import describe_report, shorten_diff
from selfrepair.agents.models.protocol import Model
from selfrepair.agents.prompts import render

from selfrepair.paths import diff_paths
from selfrepair.types import Candidate, Message, Step, StepKind, TestReport, Trajectory

REPLY_TOKENS = 1024  # edits with their context lines need more room than a one-function fix
CONTEXT_TOKENS = 3000  # the repository map and the code shown, in a prompt


class RepositoryMap:
    """The definitions of a checkout as it is now: the base's (parsed once) with the files a
    diff touched parsed again."""

    def __init__(self, work: Checkout) -> None:
        self.work = work
        self.base: list[localise.Definition] | None = None

    def current(self, diff: str) -> list[localise.Definition]:
        """The map with `diff` applied; the checkout must hold it."""
        if self.base is None:
            self.base = localise.repository_map(self.work.path)
        touched = set(diff_paths(diff))
        if not touched:
            return self.base
        fresh = [
            path for path in touched if path.endswith(".py") and (self.work.path / path).is_file()
        ]
        return [d for d in self.base if d.path not in touched] + localise.repository_map(
            self.work.path, fresh
        )


def edit(
    model: Model,
    trajectory: Trajectory,
    work: Checkout,
    repository: RepositoryMap,
    *,
    kind: StepKind,
    baseline: TestReport | None = None,
    temperature: float = 0.0,
    max_tokens: int = REPLY_TOKENS,
    context_tokens: int = CONTEXT_TOKENS,
    seed: int | None = None,
    timeout: float | None = None,
) -> Step:
    """The next step of `trajectory`: one model reply (sampled with `seed`, in at most
    `timeout` seconds) turned into a candidate diff, or into the reason it is none. The checkout is back at the base afterwards."""
    task = trajectory.task
    runs = trajectory.executed()
    parent = runs[-1] if runs else None
    last = trajectory.steps[-1] if trajectory.steps else None
    edit_problems = last.error if last is not None and last.candidate is None else ""
    parent_diff = parent.candidate.diff if parent is not None else ""

    work.reset()
    try:
        work.apply_patch(parent_diff, what="the candidate")
        ranked = localise.rank(repository.current(parent_diff), task.spec)
        code_context = localise.render_context(work.path, ranked, context_tokens)
        if parent is None and not edit_problems:
            prompt = render(
                "issue_edit",
                issue=task.spec.strip(),
                context=code_context,
                feedback=describe_report(baseline)
                if baseline is not None and not baseline.passed
                else "",
            )
        else:
            prompt = render(
                "issue_refine",
                issue=task.spec.strip(),
                context=code_context,
                diff=shorten_diff(parent_diff),
                edit_problems=edit_problems,
                feedback=describe_report(parent.report)
                if parent is not None and not edit_problems
                else "",
                critique=parent.review.critique.strip()
                if parent is not None and parent.review
                else "",
            )
        messages = [
            Message(role="system", content=render("issue_system", format_help=FORMAT_HELP)),
            Message(role="user", content=prompt),
        ]
        generation = model.generate(
            messages,
            n=1,
            temperature=temperature,
            max_tokens=max_tokens,
            seed=seed,
            timeout=timeout,
        )
        completion = generation.completions[0]
        step = Step(
            index=len(trajectory.steps),
            kind=kind,
            parent=parent.index if parent else None,
            messages=messages,
            completion=completion.text,
            finish_reason=completion.finish_reason,
            seed=seed,
            prompt_tokens=generation.prompt_tokens,
            completion_tokens=generation.completion_tokens,
            model_seconds=generation.seconds,
        )
        if completion.finish_reason == "time":
            # Half a reply, and no time left to test it: recorded, never a candidate.
            step.error = "reply cut when the time budget ran out"
            return step
        result = apply_edits(completion.text, work.read)
        if not result.ok:
            step.error = result.feedback()
            return step
        for path, text in result.files.items():
            work.write(path, text)
        diff = work.diff()
        if diff.strip():
            step.candidate = Candidate(
                diff=diff, explanation=completion.text.split("<<<<<<<")[0].strip()[:500]
            )
        else:
            step.error = (
                "Your edits undo every change: the code is back to the original, which fails."
            )
        return step
    finally:
        work.reset()
