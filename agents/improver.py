"""The improver (STOP, reflective prompt evolution): reads a strategy, its utility and the
trajectories it failed, and proposes a new version as data (a JSON object of the fields it
changes). What it proposes is screened by selfrepair.strategy before anything uses it."""

from __future__ import annotations

import json
import typing
from collections.abc import Sequence

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from selfrepair.agents.feedback import describe_report
from selfrepair.agents.models.protocol import Generation, Model
from selfrepair.agents.prompts import render, source

from selfrepair.settings import Budget
from selfrepair.strategy import ROLE_VARIABLES, Strategy
from selfrepair.types import Message, Trajectory

REPLY_CHARS = 600  # of a failed task's last reply, shown
FAILURES_SHOWN = 3
# The reply ends with its JSON block; templates inside it are JSON strings, whose line breaks
# are escaped, so a fence at the start of a line closes the block.
STOP = ("\n```\n",)


def shown_strategy(strategy: Strategy, recursive: bool = False) -> str:
    """The strategy as the improver reads it: every template's text, the shipped one where the
    strategy keeps it; the improver's own only when it may change it (`recursive`)."""
    data = strategy.model_dump()
    data["prompts"] = {
        role: text if text is not None else source(role)
        for role, text in data["prompts"].items()
        if role != "improver" or recursive
    }
    return json.dumps(data, indent=1)


def shown_failures(failures: Sequence[Trajectory]) -> str:
    parts = []
    for trajectory in failures[:FAILURES_SHOWN]:
        tested = trajectory.executed()
        last = tested[-1] if tested else (trajectory.steps[-1] if trajectory.steps else None)
        lines = [f"## {trajectory.task.task_id}"]
        if last is not None:
            lines.append("Reply:\n" + last.completion[:REPLY_CHARS])
            if last.report is not None:
                lines.append("Tests:\n" + describe_report(last.report))
        parts.append("\n".join(lines))
    return "\n\n".join(parts) or "(none)"


def shown_fields(strategy: Strategy, limit: Budget) -> str:
    """The fields besides the templates as the improver reads them: what each means, what it
    may hold (the budgets no more than the run's: the screen refuses more) and its value now.
    A small model shown only the strategy wrote values outside the schema's ranges."""
    caps = {"max_candidates": limit.max_candidates, "max_tokens": limit.max_tokens}
    models: list[tuple[str, BaseModel]] = [("", strategy), ("feedback.", strategy.feedback)]
    return "\n".join(
        f"- {prefix}{name}: {info.description}; {allowed(info, caps.get(name))}; "
        f"now {json.dumps(getattr(model, name))}"
        for prefix, model in models
        for name, info in type(model).model_fields.items()
        if info.description is not None  # feedback and prompts: shown field by field, as text
    )


def allowed(info: FieldInfo, cap: int | None) -> str:
    """The values a field takes, in JSON's words."""
    choices = typing.get_args(info.annotation)
    if typing.get_origin(info.annotation) is typing.Literal:
        return "one of " + ", ".join(json.dumps(choice) for choice in choices)
    if info.annotation is bool:
        return "true or false"
    low = next((m.ge for m in info.metadata if hasattr(m, "ge")), None)
    high = next((m.le for m in info.metadata if hasattr(m, "le")), cap)
    kind = "a number" if info.annotation is float else "an integer"
    return f"{kind} from {low} to {high}" + (", or null" if type(None) in choices else "")


def shown_roles(recursive: bool = False) -> str:
    return "\n".join(
        f"- {role}: given {', '.join(sorted(given)) or 'nothing'}; must show "
        f"{', '.join(sorted(required)) or 'nothing'}"
        for role, (given, required) in ROLE_VARIABLES.items()
        if role != "improver" or recursive
    )


def messages(
    strategy: Strategy,
    utility: float,
    failures: Sequence[Trajectory],
    limit: Budget,
    recursive: bool = False,
) -> list[Message]:
    """The improver's prompt, in the strategy's own improver template (the recursive step
    tunes it) or the shipped one."""
    prompt = render(
        "improver",
        strategy.prompts.improver,
        strategy=shown_strategy(strategy, recursive),
        utility=f"{utility:.4g}",
        failures=shown_failures(failures),
        fields=shown_fields(strategy, limit),
        roles=shown_roles(recursive),
    )
    return [Message(role="user", content=prompt)]


def propose(
    model: Model,
    strategy: Strategy,
    utility: float,
    failures: Sequence[Trajectory],
    limit: Budget,
    *,
    recursive: bool = False,
    temperature: float = 0.8,
    max_tokens: int = 1024,
    seed: int | None = None,
    timeout: float | None = None,
) -> Generation:
    """One proposal: the improver's reply (to be screened), with its cost; a reply cut by
    `timeout` comes back with finish reason "time"."""
    return model.generate(
        messages(strategy, utility, failures, limit, recursive),
        n=1,
        temperature=temperature,
        max_tokens=max_tokens,
        stop=STOP,
        seed=seed,
        timeout=timeout,
    )


def normalised(strategy: Strategy) -> Strategy:
    """`strategy` with every template that is the shipped one's text as None (shipped), so a
    proposal that resends a template unchanged changes nothing."""
    prompts = {
        role: None if text is not None and text.strip() == source(role).strip() else text
        for role, text in strategy.prompts.model_dump().items()
    }
    return strategy.model_copy(update={"prompts": strategy.prompts.model_copy(update=prompts)})
