"""The Model protocol: every backend turns chat messages into n completions with token counts.

Each backend is a module of its own that imports this one (never the other way round);
`agents.models.backends` makes one from a model spec string.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from selfrepair.types import Message


@dataclass(frozen=True)
class Completion:
    text: str
    completion_tokens: int
    finish_reason: str = "stop"  # "stop", "length" (max_tokens) or "time" (the call's timeout)


@dataclass(frozen=True)
class Generation:
    """The answer to one generate call: n completions of one prompt."""

    completions: list[Completion]
    prompt_tokens: int  # tokens of the prompt, counted once
    seconds: float = 0.0
    model: str = ""

    @property
    def completion_tokens(self) -> int:
        return sum(c.completion_tokens for c in self.completions)

    @property
    def texts(self) -> list[str]:
        return [c.text for c in self.completions]


class Model(Protocol):
    """n completions of one chat, with token counts. Temperature 0 is greedy decoding: n > 1
    then gives n copies of the one greedy completion (the in-process backends compute it once).
    A completion ends before the first stop string, which it does not include, and has at most
    `max_tokens` tokens (finish reason "length" when it was cut there). A `seed` makes
    sampling repeatable: the same seed, prompt, n and model give the same completions, whatever
    other calls run beside it (on the same hardware and library versions; servers are sent the
    seed, and the ones tested honour it); None leaves the backend's own randomness. Every
    backend is held to this by tests/test_model_contract.py.

    A `timeout` (seconds) bounds the call: when it is reached the backend stops generating and
    returns what it has by then, each completion it cut there with finish reason "time" (the
    text generated so far where the backend sees it as it grows, in process; "" from a server,
    whose request is closed, so that the server aborts it). Tokens spent still count: those
    generated, or, when a server never answered, the prompt's estimate. None: no limit."""

    spec: str  # the spec string it was made from, recorded in trajectories

    def generate(
        self,
        messages: Sequence[Message],
        n: int = 1,
        temperature: float = 0.0,
        max_tokens: int = 512,
        stop: Sequence[str] | None = None,
        seed: int | None = None,
        timeout: float | None = None,
    ) -> Generation: ...


def cut_at_stop(text: str, stop: Sequence[str] | None) -> tuple[str, bool]:
    """The text up to the first stop string (not included), and whether one was found."""
    cut = min((i for i in (text.find(s) for s in stop or () if s) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)
