"""What a repair may spend, and how it samples: the loop's configuration, with its defaults.

Every strategy stops at the first of: a candidate that passes the tests, `max_candidates`
model replies, `max_tokens` tokens (prompt and completion, reviewer included), or
`max_seconds` of wall time spent on the task (kept across a resume).
"""

from __future__ import annotations

from dataclasses import dataclass

from selfrepair.errors import SelfRepairError
from selfrepair.types import Trajectory


@dataclass(frozen=True)
class Budget:
    max_candidates: int = 8
    max_tokens: int = 100_000
    max_seconds: float = 1800.0

    def __post_init__(self) -> None:
        if self.max_candidates < 1:
            raise SelfRepairError(f"budget: max_candidates must be at least 1, got {self.max_candidates}")
        if self.max_tokens < 1 or self.max_seconds <= 0:
            raise SelfRepairError("budget: max_tokens and max_seconds must be positive")

    def candidates_left(self, trajectory: Trajectory) -> int:
        return max(self.max_candidates - len(trajectory.steps), 0)

    def exhausted(self, trajectory: Trajectory) -> str:
        """Why no further candidate may be asked for, or "" while budget is left."""
        if self.candidates_left(trajectory) == 0:
            return f"candidate budget spent ({self.max_candidates})"
        if trajectory.tokens >= self.max_tokens:
            return f"token budget spent ({trajectory.tokens} of {self.max_tokens})"
        if trajectory.wall_seconds >= self.max_seconds:
            return f"time budget spent ({trajectory.wall_seconds:.0f} s of {self.max_seconds:.0f} s)"
        return ""


@dataclass(frozen=True)
class Sampling:
    """Generation settings. The first candidate of the refine loop is greedy (so it is the
    model's single-shot answer); every other sample uses `temperature`."""

    temperature: float = 0.8
    max_tokens: int = 320  # per reply
    # Generation stops at the end of the first code block: what follows is prose that costs
    # tokens (and, in a batch, holds every other sample back) without changing the candidate.
    stop: tuple[str, ...] = ("\n```\n",)
    review_max_tokens: int = 128
    samples: int = 8  # best-of-n: candidates per batched call
    children: int = 1  # tree search: candidates per expansion
    test_weight: float = 0.7  # tree search: a node's value = w * tests passed + (1 - w) * reviewer confidence
    exploration: float = 1.0  # tree search: the UCT constant
