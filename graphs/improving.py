"""One step of STOP's loop: the improver agent proposes a new strategy from the current one,
its utility and the trajectories it failed, and the proposal is screened
(selfrepair.strategy.screen) before anything runs it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from selfrepair.agents import improver
from selfrepair.agents.models.protocol import Model

from selfrepair.settings import Budget
from selfrepair.strategy import Screened, Strategy, proposal_data, screen
from selfrepair.types import Trajectory


@dataclass(frozen=True)
class Proposal:
    reply: str
    tokens: int
    seconds: float
    screened: Screened  # the strategy it makes, or why it was refused


def propose_strategy(
    model: Model,
    current: Strategy,
    utility: float,
    failures: Sequence[Trajectory],
    limit: Budget,
    *,
    recursive: bool = False,
    seed: int | None = None,
) -> Proposal:
    """The improver's proposal for `current`, screened against the run's budget `limit`; its
    call may take a task's time budget (`limit.max_seconds`), and one cut there is refused."""
    generation = improver.propose(
        model,
        current,
        utility,
        failures,
        limit,
        recursive=recursive,
        seed=seed,
        timeout=limit.max_seconds,
    )
    completion = generation.completions[0]
    reply = completion.text
    if completion.finish_reason == "time":
        screened = Screened(
            None, ("cut",), (f"cut: no whole reply within {limit.max_seconds:.0f} s",)
        )
    else:
        screened = screen(proposal_data(reply), current, limit, recursive=recursive)
    if screened.strategy is not None:
        screened = Screened(improver.normalised(screened.strategy))
    tokens = generation.prompt_tokens + sum(c.completion_tokens for c in generation.completions)
    return Proposal(reply, tokens, generation.seconds, screened)
