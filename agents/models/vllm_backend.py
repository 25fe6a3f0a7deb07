"""The `vllm` backend: vLLM, in process where this environment has it, else its server.

- In process (vLLM installed in the project's environment, as `pip install selfrepair[vllm]`
  does on a CUDA machine): `n` samples are one request (`SamplingParams(n=...)`);
  `vllm:BASE+ADAPTER_DIR` applies a PEFT LoRA adapter through a LoRARequest.
- Everywhere else (a CPU, or a GPU machine without vLLM here): vLLM's OpenAI-compatible
  server, run from vLLM's own environment, which is made on first use (vllm_env; minutes,
  once). One server per base model in the process; an adapter is loaded into it as a LoRA
  module on first use (vllm_server.shared_server), and asked through the `openai` backend.

Where neither can be had (no vLLM build for this machine, no room for its environment, its
install fails), construction says why.

A call's `timeout`: the server's request is given up and closed (the `openai` backend; vLLM's
server aborts it). The in-process engine does not take one yet: its call runs to its end
(stepping the engine and aborting at the deadline was not verified to work here).
"""

from __future__ import annotations

import functools
import importlib.util
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from selfrepair.agents.models.adapters import resolve_base
from selfrepair.agents.models.protocol import Completion, Generation

from selfrepair.errors import SelfRepairError
from selfrepair.types import Message


def in_process() -> bool:
    """Whether vLLM is installed in this environment (the server is the way otherwise)."""
    return importlib.util.find_spec("vllm") is not None


@functools.lru_cache(maxsize=2)
def start_engine(name_or_path: str, max_lora_rank: int | None) -> Any:
    """One engine per process and base model: starting one takes most of a minute."""
    from vllm import LLM

    lora = {"enable_lora": True, "max_lora_rank": max_lora_rank} if max_lora_rank else {}
    try:
        return LLM(model=name_or_path, **lora)
    except (OSError, ValueError, RuntimeError) as error:
        raise SelfRepairError(f"vllm could not load {name_or_path!r}: {error}") from None


class VLLMModel:
    def __init__(
        self, name_or_path: str, adapter: str | Path | None = None, spec: str | None = None
    ) -> None:
        from selfrepair.agents.models.vllm_server import adapter_name, lora_rank

        self.name_or_path = resolve_base(name_or_path)  # `smollm2` names the embedded default
        self.adapter = Path(adapter) if adapter is not None else None
        self.spec = spec or f"vllm:{name_or_path}" + (f"+{adapter}" if adapter else "")
        self.rank = lora_rank(self.adapter) if self.adapter is not None else None
        if in_process():
            self.llm = start_engine(self.name_or_path, self.rank)
            self.lora_request = None
            if self.adapter is not None:
                from vllm.lora.request import LoRARequest

                self.lora_request = LoRARequest(
                    adapter_name(self.adapter), 1, str(self.adapter.resolve())
                )
        else:
            self.llm = None
            self.served: tuple[Any, Any] | None = (
                None  # (the server, the `openai` model that asks it)
            )
            self.server_model()  # starts the server (and makes its environment) now, not at the first call

    def server_model(self) -> Any:
        """An `openai` model asking this process's server for the base with the adapter
        (a new one where the server was replaced by one with room for a larger LoRA rank)."""
        from selfrepair.agents.models.openai_compatible import OpenAIModel
        from selfrepair.agents.models.vllm_server import shared_server

        server = shared_server(self.name_or_path, self.rank or 0)
        if self.served is None or self.served[0] is not server:
            self.served = (
                server,
                OpenAIModel(server.model_for(self.adapter), server.base_url, spec=self.spec),
            )
        return self.served[1]

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
        if self.llm is None:
            return self.server_model().generate(
                messages,
                n=n,
                temperature=temperature,
                max_tokens=max_tokens,
                stop=stop,
                seed=seed,
                timeout=timeout,
            )
        from vllm import SamplingParams

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
