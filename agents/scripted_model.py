"""The scripted backend: replies read from a file, in call order. For tests and demos.

The file is JSON: a list of reply strings. Each completion takes the next reply (a call with
n=3 takes the next three); when the list runs out, generate() raises SelfRepairError.
Token counts are whitespace-separated words, so budgets behave like they would with a model.
A reply is cut at the first stop string, as a real backend would cut it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Sequence

from selfrepair.agents.models import Completion, Generation, cut_at_stop
from selfrepair.errors import SelfRepairError
from selfrepair.types import Message


def count_words(text: str) -> int:
    return len(text.split())


def read_replies(path: Path) -> list[str]:
    try:
        replies = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SelfRepairError(f"scripted model: no such file: {path}") from None
    except json.JSONDecodeError as error:
        raise SelfRepairError(
            f"scripted model: {path}:{error.lineno}: not valid JSON: {error.msg}"
        ) from None
    if not isinstance(replies, list) or not all(isinstance(r, str) for r in replies):
        raise SelfRepairError(f"scripted model: {path} must hold a JSON list of strings")
    return replies


class ScriptedModel:
    """Hands out the file's replies one completion at a time; shared by everyone holding it."""

    def __init__(self, path: str | Path, spec: str | None = None) -> None:
        self.path = Path(path)
        self.spec = spec or f"scripted:{path}"
        self.replies = read_replies(self.path)
        self.next_index = 0

    @property
    def remaining(self) -> int:
        return len(self.replies) - self.next_index

    def generate(
        self,
        messages: Sequence[Message],
        n: int = 1,
        temperature: float = 0.0,
        max_tokens: int = 512,
        stop: Sequence[str] | None = None,
        seed: int | None = None,
    ) -> Generation:
        started = time.perf_counter()
        if n < 1:
            raise SelfRepairError(f"n must be at least 1, got {n}")
        if n > self.remaining:
            raise SelfRepairError(
                f"scripted model {self.path} ran out of replies: asked for {n}, "
                f"{self.remaining} left of {len(self.replies)}"
            )
        texts = [cut_at_stop(t, stop)[0] for t in self.replies[self.next_index : self.next_index + n]]
        self.next_index += n
        completions = [Completion(text=t, completion_tokens=count_words(t)) for t in texts]
        return Generation(
            completions=completions,
            prompt_tokens=sum(count_words(m.content) for m in messages),
            seconds=time.perf_counter() - started,
            model=self.spec,
        )
