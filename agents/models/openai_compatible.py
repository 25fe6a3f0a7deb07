"""The `openai` backend: any OpenAI-compatible chat server (vLLM, `transformers serve`, an API).

It does not trust the server to honour `n`: some (`transformers serve`) return one choice
whatever is asked, so when fewer come back it asks again for the rest and adds up the usage.
Greedy requests (temperature 0) ask for one choice and copy it.
The key comes from OPENAI_API_KEY; local servers take any.

Sampled requests send `seed`, and ask to sample: `transformers serve` samples only when the
model's generation config says so (SmolLM2's does not), whatever the temperature, unless the
request's `generation_config` does. vLLM ignores that field; a server that refuses it (OpenAI's
API) is asked again without it, and not sent it again.

A call's `timeout` is each request's client timeout (what is left of it, without retries):
when it passes the client closes the connection and the call returns empty completions cut
by "time". vLLM's server aborts a request whose client disconnects (its chat endpoint is
`with_cancellation`), so it stops spending on it; the prompt's tokens are counted by estimate.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Sequence
from typing import Any

import openai
from selfrepair.agents.models.protocol import Completion, Generation, cut_at_stop

from selfrepair.errors import SelfRepairError
from selfrepair.types import Message

SAMPLE = {"generation_config": json.dumps({"do_sample": True})}


class OpenAIModel:
    def __init__(
        self, name: str, base_url: str, spec: str | None = None, timeout_s: float = 600.0
    ) -> None:
        self.name = name
        self.base_url = base_url
        self.spec = spec or f"openai:{name}@{base_url}"
        self.client = openai.OpenAI(
            base_url=base_url,
            api_key=os.environ.get("OPENAI_API_KEY") or "not-needed",
            timeout=timeout_s,
            max_retries=2,
        )
        self.asks_to_sample = True  # until the server refuses SAMPLE

    def ask(
        self,
        messages: Sequence[Message],
        n: int,
        temperature: float,
        max_tokens: int,
        stop: Sequence[str] | None,
        seed: int | None = None,
        timeout: float | None = None,
    ) -> Any:
        """The server's response; None when `timeout` passed first (the request given up)."""
        extra = SAMPLE if temperature > 0 and self.asks_to_sample else None
        # A retry would start the time over: a bounded request is asked once.
        client = self.client if timeout is None else self.client.with_options(max_retries=0)
        try:
            return client.chat.completions.create(
                model=self.name,
                messages=[{"role": m.role, "content": m.content} for m in messages],
                n=n,
                temperature=temperature,
                max_tokens=max_tokens,
                stop=list(stop) if stop else None,
                seed=seed,
                extra_body=extra,
                **({} if timeout is None else {"timeout": timeout}),
            )
        except openai.APITimeoutError:
            if timeout is None:  # the client's own limit (timeout_s): the server hangs
                raise SelfRepairError(
                    f"the model server at {self.base_url} did not answer in time"
                ) from None
            return None
        except openai.APIConnectionError as error:
            raise SelfRepairError(
                f"cannot reach the model server at {self.base_url}: {error.__cause__ or error}"
            ) from None
        except openai.NotFoundError as error:
            raise SelfRepairError(
                f"model {self.name!r} not found at {self.base_url}: {server_detail(error)}"
            ) from None
        except openai.APIStatusError as error:
            if extra is not None and error.status_code == 400 and "generation_config" in str(error):
                self.asks_to_sample = False
                return self.ask(messages, n, temperature, max_tokens, stop, seed, timeout)
            raise SelfRepairError(
                f"the model server at {self.base_url} refused model {self.name!r} "
                f"(HTTP {error.status_code}): {server_detail(error)}"
            ) from None

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
        if n < 1:
            raise SelfRepairError(f"n must be at least 1, got {n}")
        started = time.perf_counter()
        completions: list[Completion] = []
        prompt_tokens = 0
        # Greedy decoding is deterministic: one choice, copied n times (as the hf backend
        # does); vLLM refuses n > 1 at temperature 0.
        wanted = 1 if temperature <= 0 else n
        while len(completions) < wanted:
            # Asked again for the rest, with the next seed: the same seed would repeat the first answer.
            again_seed = None if seed is None else seed + len(completions)
            left = None if timeout is None else timeout - (time.perf_counter() - started)
            response = None
            if left is None or left > 0:
                response = self.ask(
                    messages,
                    wanted - len(completions),
                    temperature,
                    max_tokens,
                    stop,
                    again_seed,
                    left,
                )
            if response is None:  # the time ran out: what never came back is cut by it
                prompt_tokens = prompt_tokens or estimate_tokens(messages)
                completions += [Completion("", 0, "time")] * (wanted - len(completions))
                break
            choices = response.choices[: wanted - len(completions)]
            if not choices:
                raise SelfRepairError(f"the model server at {self.base_url} returned no choices")
            texts = [choice.message.content or "" for choice in choices]
            usage = response.usage
            prompt_tokens = prompt_tokens or (
                usage.prompt_tokens if usage else estimate_tokens(messages)
            )
            total = usage.completion_tokens if usage else sum(map(estimate_text_tokens, texts))
            for choice, text, tokens in zip(
                choices, texts, split_evenly(total, len(choices)), strict=True
            ):
                text, stopped = cut_at_stop(text, stop)
                reason = "stop" if stopped or choice.finish_reason != "length" else "length"
                completions.append(
                    Completion(text=text, completion_tokens=tokens, finish_reason=reason)
                )
        return Generation(
            completions=completions * (n // wanted),
            prompt_tokens=prompt_tokens,
            seconds=time.perf_counter() - started,
            model=self.spec,
        )


def split_evenly(total: int, parts: int) -> list[int]:
    """A server reports one completion-token total for all its choices; share it out so the
    per-completion counts add up to exactly what the server counted."""
    share, extra = divmod(total, parts)
    return [share + (1 if i < extra else 0) for i in range(parts)]


def estimate_text_tokens(text: str) -> int:
    """For servers that report no usage: OpenAI's rule of thumb, four characters a token."""
    return math.ceil(len(text) / 4)


def estimate_tokens(messages: Sequence[Message]) -> int:
    return sum(estimate_text_tokens(m.content) for m in messages)


def server_detail(error: openai.APIStatusError) -> str:
    body = error.body
    if isinstance(body, dict):
        detail = body.get("detail") or body.get("message") or body.get("error")
        if isinstance(detail, dict):
            detail = detail.get("message")
        if detail:
            return " ".join(str(detail).split())
    return " ".join(str(error.message).split())
