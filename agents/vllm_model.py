"""The `vllm` backend: vLLM's in-process engine, for batch generation on a CUDA GPU.

`n` samples are one request (`SamplingParams(n=...)`). `vllm:BASE+ADAPTER_DIR` serves a
PEFT LoRA adapter on top of its base through a LoRARequest. vLLM is an optional extra
(`pip install selfrepair[vllm]`); without it, or without a GPU, construction says so.
"""

from __future__ import annotations

import functools
import json
import time
from pathlib import Path
from typing import Any, Sequence

from selfrepair.agents.models import Completion, Generation
from selfrepair.errors import SelfRepairError
from selfrepair.types import Message

NEEDS = "the vllm backend needs a CUDA GPU and vLLM (`pip install selfrepair[vllm]`)"


def check_available() -> None:
    try:
        import vllm  # noqa: F401
    except ImportError as error:
        raise SelfRepairError(f"{NEEDS}; vllm cannot be imported here: {error}") from None
    import torch

    if not torch.cuda.is_available():
        raise SelfRepairError(f"{NEEDS}; no CUDA GPU is visible here")


@functools.lru_cache(maxsize=2)
def start_engine(name_or_path: str, max_lora_rank: int | None) -> Any:
    """One engine per process and base model: starting one takes most of a minute."""
    from vllm import LLM

    lora = {"enable_lora": True, "max_lora_rank": max_lora_rank} if max_lora_rank else {}
    try:
        return LLM(model=name_or_path, **lora)
    except (OSError, ValueError) as error:
        raise SelfRepairError(f"vllm could not load {name_or_path!r}: {error}") from None


def adapter_rank(adapter: Path) -> int:
    """vLLM reserves memory for a maximum LoRA rank; it must cover the adapter's."""
    try:
        rank = int(json.loads((adapter / "adapter_config.json").read_text())["r"])
    except (OSError, KeyError, ValueError) as error:
        raise SelfRepairError(f"{adapter} is not a PEFT LoRA adapter folder: {error}") from None
    # vLLM accepts only these ranks.
    return next(r for r in (8, 16, 32, 64, 128, 256, 320, 512) if r >= rank)


class VLLMModel:
    def __init__(self, name_or_path: str, adapter: str | Path | None = None, spec: str | None = None) -> None:
        check_available()
        self.name_or_path = name_or_path
        self.spec = spec or f"vllm:{name_or_path}" + (f"+{adapter}" if adapter else "")
        self.lora_request = None
        rank = None
        if adapter is not None:
            from vllm.lora.request import LoRARequest

            adapter = Path(adapter)
            rank = adapter_rank(adapter)
            self.lora_request = LoRARequest(adapter.name, 1, str(adapter.resolve()))
        self.llm = start_engine(name_or_path, rank)

    def generate(
        self,
        messages: Sequence[Message],
        n: int = 1,
        temperature: float = 0.0,
        max_tokens: int = 512,
        stop: Sequence[str] | None = None,
        seed: int | None = None,
    ) -> Generation:
        from vllm import SamplingParams

        if n < 1:
            raise SelfRepairError(f"n must be at least 1, got {n}")
        started = time.perf_counter()
        # Greedy decoding is deterministic: one sequence, copied n times (as the hf backend does).
        greedy = temperature <= 0
        params = SamplingParams(
            n=1 if greedy else n,
            temperature=0.0 if greedy else temperature,
            max_tokens=max_tokens,
            stop=list(stop) if stop else None,
            seed=seed,
        )
        chat = [{"role": m.role, "content": m.content} for m in messages]
        [output] = self.llm.chat(chat, params, lora_request=self.lora_request, use_tqdm=False)
        completions = [
            Completion(
                text=sample.text,
                completion_tokens=len(sample.token_ids),
                finish_reason="length" if sample.finish_reason == "length" else "stop",
            )
            for sample in output.outputs
        ]
        if greedy:
            completions = completions * n
        return Generation(
            completions=completions,
            prompt_tokens=len(output.prompt_token_ids),
            seconds=time.perf_counter() - started,
            model=self.spec,
        )
