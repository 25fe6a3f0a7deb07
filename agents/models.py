"""The Model protocol: every backend turns chat messages into n completions with token counts.

A model spec is one string:
  smollm2                          the embedded default (SmolLM2-135M-Instruct, pulled once)
  hf:PATH_OR_ID[+ADAPTER_DIR]      transformers in process (CPU or GPU), optional PEFT adapter
  openai:NAME@BASE_URL             any OpenAI-compatible server (vLLM, `transformers serve`, an API)
  vllm:NAME_OR_PATH                vLLM's in-process engine (needs a GPU)
  scripted:FILE                    replies read from a file, for tests
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Sequence

from selfrepair.types import Message


@dataclass(frozen=True)
class Completion:
    text: str
    completion_tokens: int
    finish_reason: str = "stop"  # "stop" or "length"


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
    spec: str  # the spec string it was made from, recorded in trajectories

    def generate(
        self,
        messages: Sequence[Message],
        n: int = 1,
        temperature: float = 0.0,
        max_tokens: int = 512,
        stop: Sequence[str] | None = None,
    ) -> Generation: ...
