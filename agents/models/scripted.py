"""The scripted backend: replies read from a file, in call order. For tests and demos.

The file is JSON: a list of reply strings. Each completion takes the next reply (a call with
n=3 takes the next three); when the list runs out, generate() raises SelfRepairError.
Or an object of such lists, keyed by a text that names the task (e.g. "def gcd("): a call
takes its replies from the first key, in the file's order, found in the conversation, so
each task gets its own replies in whatever order, thread or machine the tasks run.
Token counts are whitespace-separated words, so budgets behave like they would with a model.
A reply is cut at the first stop string, or after max_tokens words, as a real backend would
cut it. A reply may also be an object {"reply": TEXT, "seconds": S}: the model takes S seconds
to give it, its words coming at an even pace, so a call's `timeout` cuts it (finish reason
"time", the words given by then), as it would cut a slow model. Its replies depend on no
randomness: a seed changes nothing, so a fresh model given the same calls gives the same
replies, as the Model protocol asks of a seeded call.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from selfrepair.agents.models.protocol import Completion, Generation, cut_at_stop

from selfrepair.errors import SelfRepairError
from selfrepair.files import read_input
from selfrepair.types import Message

SHARED = ""  # the key of a plain list's replies


def count_words(text: str) -> int:
    return len(text.split())


@dataclass(frozen=True)
class Reply:
    text: str
    seconds: float = 0.0  # how long the model takes to give it


def is_reply(item: object) -> bool:
    if isinstance(item, str):
        return True
    return (
        isinstance(item, dict)
        and set(item) == {"reply", "seconds"}
        and isinstance(item["reply"], str)
        and isinstance(item["seconds"], int | float)
        and not isinstance(item["seconds"], bool)
        and item["seconds"] >= 0
    )


def read_replies(path: Path) -> dict[str, list[Reply]]:
    """The file's replies by key (a plain list is the one key SHARED)."""
    try:
        replies = json.loads(read_input(path, f"scripted model: {path}"))
    except json.JSONDecodeError as error:
        raise SelfRepairError(
            f"scripted model: {path}:{error.lineno}: not valid JSON: {error.msg}"
        ) from None
    keyed = {SHARED: replies} if isinstance(replies, list) else replies
    if (
        not isinstance(keyed, dict)
        or (keyed is replies and SHARED in keyed)
        or not all(isinstance(r, list) and all(map(is_reply, r)) for r in keyed.values())
    ):
        raise SelfRepairError(
            f"scripted model: {path} must hold a JSON list of replies (strings, or "
            '{"reply": TEXT, "seconds": S} objects), or an object of such lists under non-empty keys'
        )
    return {
        key: [Reply(r) if isinstance(r, str) else Reply(r["reply"], r["seconds"]) for r in items]
        for key, items in keyed.items()
    }


def reply(
    given: Reply, max_tokens: int, stop: Sequence[str] | None, timeout: float | None = None
) -> Completion:
    """The reply as a model would give it: cut at the first stop string, after `max_tokens`
    words when it is longer (finish reason "length"), and after the words its pace gives by
    `timeout` when it takes longer (finish reason "time")."""
    text = cut_at_stop(given.text, stop)[0]
    words = list(re.finditer(r"\S+", text))
    if timeout is not None and given.seconds > timeout:
        given_by_then = int(len(words) * timeout / given.seconds)
        if given_by_then < min(len(words), max_tokens):
            end = words[given_by_then - 1].end() if given_by_then else 0
            return Completion(text[:end], given_by_then, "time")
    if len(words) > max_tokens:
        return Completion(text[: words[max_tokens - 1].end()], max_tokens, "length")
    return Completion(text=text, completion_tokens=len(words))


class ScriptedModel:
    """Hands out the file's replies one completion at a time; shared by everyone holding it."""

    def __init__(self, path: str | Path, spec: str | None = None) -> None:
        self.path = Path(path)
        self.spec = spec or f"scripted:{path}"
        self.replies = read_replies(self.path)
        self.next_index = dict.fromkeys(self.replies, 0)
        self.lock = threading.Lock()  # one model serves a run's parallel tasks

    def key_for(self, messages: Sequence[Message]) -> str:
        if SHARED in self.replies:
            return SHARED
        for key in self.replies:
            if any(key in m.content for m in messages):
                return key
        raise SelfRepairError(
            f"scripted model {self.path}: none of its keys occurs in the conversation"
        )

    def generate(
        self,
        messages: Sequence[Message],
        n: int = 1,
        temperature: float = 0.0,
        max_tokens: int = 512,
        stop: Sequence[str] | None = None,
        seed: int | None = None,
        timeout: float | None = None,
    ) -> Generation:
        started = time.perf_counter()
        if n < 1:
            raise SelfRepairError(f"n must be at least 1, got {n}")
        key = self.key_for(messages)
        replies = self.replies[key]
        with self.lock:
            first = self.next_index[key]
            if n > len(replies) - first:
                raise SelfRepairError(
                    f"scripted model {self.path} ran out of replies{f' for {key!r}' if key else ''}: "
                    f"asked for {n}, {len(replies) - first} left of {len(replies)}"
                )
            self.next_index[key] = first + n
        given = replies[first : first + n]
        # The n replies come from one batched call: it takes as long as the slowest.
        slowest = max(r.seconds for r in given)
        time.sleep(slowest if timeout is None else min(slowest, max(timeout, 0.0)))
        completions = [reply(r, max_tokens, stop, timeout) for r in given]
        return Generation(
            completions=completions,
            prompt_tokens=sum(count_words(m.content) for m in messages),
            seconds=time.perf_counter() - started,
            model=self.spec,
        )
