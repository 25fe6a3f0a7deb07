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
    """The improver's proposal for `current`, screened against the run's budget `limit`."""
    generation = improver.propose(
        model, current, utility, failures, limit, recursive=recursive, seed=seed
    )
    reply = generation.completions[0].text
    screened = screen(proposal_data(reply), current, limit, recursive=recursive)
    if screened.strategy is not None:
        screened = Screened(improver.normalised(screened.strategy))
    tokens = generation.prompt_tokens + sum(c.completion_tokens for c in generation.completions)
    return Proposal(reply, tokens, generation.seconds, screened)
