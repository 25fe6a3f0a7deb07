"""How a repair is configured, with its defaults: what it may spend (Budget), how it samples
(Sampling), what it asks (Prompts), how it shows test results (Feedback) and how the
label-free graph votes (Voting).

Every strategy stops at the first of: a candidate that passes the tests, `max_candidates`
model replies, `max_tokens` tokens (prompt and completion, reviewer included), or
`max_seconds` of wall time spent on the task (kept across a resume). What is left of
`max_seconds` also cuts each test run and each model call (its `timeout`), so neither a
hanging test nor a slow model can outlast it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field

from selfrepair.errors import SelfRepairError
from selfrepair.types import Trajectory


@dataclass(frozen=True)
class Budget:
    max_candidates: int = 8
    max_tokens: int = 100_000
    max_seconds: float = 1800.0

    def __post_init__(self) -> None:
        if self.max_candidates < 1:
            raise SelfRepairError(
                f"budget: max_candidates must be at least 1, got {self.max_candidates}"
            )
        if self.max_tokens < 1 or self.max_seconds <= 0:
            raise SelfRepairError("budget: max_tokens and max_seconds must be positive")

    def candidates_left(self, trajectory: Trajectory) -> int:
        return max(self.max_candidates - len(trajectory.steps), 0)

    def seconds_left(self, trajectory: Trajectory) -> float:
        return self.max_seconds - trajectory.wall_seconds

    def exhausted(self, trajectory: Trajectory) -> str:
        """Why no further candidate may be asked for, or "" while budget is left. Time comes
        first: a model call it cut may have filled the candidate budget with cut replies."""
        if trajectory.wall_seconds >= self.max_seconds:
            return (
                f"time budget spent ({trajectory.wall_seconds:.0f} s of {self.max_seconds:.0f} s)"
            )
        if self.candidates_left(trajectory) == 0:
            return f"candidate budget spent ({self.max_candidates})"
        if trajectory.tokens >= self.max_tokens:
            return f"token budget spent ({trajectory.tokens} of {self.max_tokens})"
        return ""


@dataclass(frozen=True)
class Voting:
    """The label-free graph (graphs.consensus): how candidates are judged without tests."""

    inputs: int = 5  # calls of the function asked of the model (kept at most)
    asks: int = 1  # replies asked for them in one call: one is greedy, more are sampled
    min_votes: int = 2  # a pseudo-label needs at least this many candidates that behave alike...
    min_share: float = 0.5  # ...making at least this share of the task's candidates
    call_seconds: float = 2.0  # per call, in the sandbox


class Prompts(BaseModel):
    """Prompt templates (Jinja text) per role; None: the one shipped in agents/prompts/.
    Rendered sandboxed, so a template is text to fill in, never code that runs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    system: str | None = None  # the solver's and refiner's system message
    solve: str | None = None
    refine: str | None = None
    review_system: str | None = None
    review: str | None = None
    improver: str | None = None  # `tune`'s improver (the recursive step tunes it)


class Feedback(BaseModel):
    """How a test report is shown to the solver, refiner and reviewer (agents.feedback)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    traceback_lines: int = Field(
        8, ge=1, le=40, description="the last lines of each failing test's traceback"
    )
    max_failures: int = Field(3, ge=1, le=20, description="failing tests shown")
    max_chars: int = Field(1200, ge=200, le=8000, description="the whole text, cut from the front")


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
    test_weight: float = (
        0.7  # tree search: a node's value = w * tests passed + (1 - w) * reviewer confidence
    )
    exploration: float = 1.0  # tree search: the UCT constant
    # best-of-n: ask the reviewer to rank several passing candidates. An evaluation that counts
    # passing samples needs no ranking, and saves the reviewer's tokens.
    review_ties: bool = True
    # A run's sampling seed: each model call is seeded from it, the task and the call's first
    # step (`call_seed`), never from the order calls happen in, so a rerun draws the same
    # samples however many tasks run at once. None: unseeded (bench and fix always seed).
    seed: int | None = None
    voting: Voting = field(default_factory=Voting)  # self-consistency: the label-free vote
    prompts: Prompts = field(default_factory=Prompts)
    feedback: Feedback = field(default_factory=Feedback)

    def call_seed(self, task_id: str, first_index: int, purpose: str = "") -> int | None:
        """The seed of the model call whose first reply becomes step `first_index` of the
        task; a `purpose` ("review") names another call made for that step."""
        if self.seed is None:
            return None
        key = f"{self.seed}:{task_id}:{first_index}" + (f":{purpose}" if purpose else "")
        digest = hashlib.sha256(key.encode()).digest()
        return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF
