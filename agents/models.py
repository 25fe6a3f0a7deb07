"""The Model protocol: every backend turns chat messages into n completions with token counts.

A model spec is one string:
  smollm2                          the embedded default (SmolLM2-135M-Instruct, pulled once)
  hf:PATH_OR_ID[+ADAPTER_DIR]      transformers in process (CPU or GPU), optional PEFT adapter
  openai:NAME@BASE_URL             any OpenAI-compatible server (vLLM, `transformers serve`, an API)
  vllm:NAME_OR_PATH[+ADAPTER_DIR]  vLLM's in-process engine (needs a CUDA GPU), optional LoRA adapter
  scripted:FILE                    replies read from a file, for tests
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence

from selfrepair.errors import SelfRepairError
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
    """n completions of one chat, with token counts. Temperature 0 is greedy decoding: n > 1
    then gives n copies of the one greedy completion (the in-process backends compute it once).
    A completion ends before the first stop string, which it does not include."""

    spec: str  # the spec string it was made from, recorded in trajectories

    def generate(
        self,
        messages: Sequence[Message],
        n: int = 1,
        temperature: float = 0.0,
        max_tokens: int = 512,
        stop: Sequence[str] | None = None,
    ) -> Generation: ...


SPEC_FORMS = [
    ("smollm2", "the embedded default (SmolLM2-135M-Instruct, pulled once)"),
    ("hf:PATH_OR_ID[+ADAPTER_DIR]", "transformers in process (CPU or GPU), optional PEFT adapter"),
    ("openai:NAME@BASE_URL", "any OpenAI-compatible server (vLLM, `transformers serve`, an API)"),
    ("vllm:NAME_OR_PATH[+ADAPTER_DIR]", "vLLM's in-process engine (needs a CUDA GPU)"),
    ("scripted:FILE", "replies from a JSON list of strings, in call order (for tests)"),
]


def cut_at_stop(text: str, stop: Sequence[str] | None) -> tuple[str, bool]:
    """The text up to the first stop string (not included), and whether one was found."""
    cut = min((i for i in (text.find(s) for s in stop or () if s) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


def split_adapter(spec: str, rest: str) -> tuple[str, Path | None]:
    """`BASE+ADAPTER_DIR` -> (BASE, ADAPTER_DIR); the adapter folder must exist."""
    base, plus, adapter = rest.partition("+")
    if not base:
        raise SelfRepairError(f"model spec {spec!r}: no model named before '+'")
    if not plus:
        return base, None
    adapter_dir = Path(adapter).expanduser()
    if not adapter or not adapter_dir.is_dir():
        raise SelfRepairError(f"model spec {spec!r}: adapter folder not found: {adapter!r}")
    return base, adapter_dir


def load_model(spec: str) -> Model:
    """Make the model a spec string names. Backends are imported here, on demand, because
    torch, transformers and vllm take seconds to import and most callers need one of them."""
    prefix, colon, rest = spec.strip().partition(":")
    if prefix == "smollm2" and not colon:
        from selfrepair.agents.hf_model import HFModel
        from selfrepair.agents.smollm2 import ensure_smollm2

        return HFModel(str(ensure_smollm2()), spec=spec)
    if not colon or not rest:
        raise SelfRepairError(
            f"bad model spec {spec!r}: expected one of "
            + ", ".join(form for form, _ in SPEC_FORMS)
        )
    if prefix == "hf":
        from selfrepair.agents.hf_model import HFModel

        base, adapter = split_adapter(spec, rest)
        return HFModel(base, adapter=adapter, spec=spec)
    if prefix == "openai":
        name, at, base_url = rest.partition("@")
        if not at or not name or not base_url:
            raise SelfRepairError(f"model spec {spec!r}: expected openai:NAME@BASE_URL")
        from selfrepair.agents.openai_model import OpenAIModel

        return OpenAIModel(name, base_url, spec=spec)
    if prefix == "vllm":
        from selfrepair.agents.vllm_model import VLLMModel

        base, adapter = split_adapter(spec, rest)
        return VLLMModel(base, adapter=adapter, spec=spec)
    if prefix == "scripted":
        from selfrepair.agents.scripted_model import ScriptedModel

        return ScriptedModel(rest, spec=spec)
    raise SelfRepairError(
        f"bad model spec {spec!r}: unknown backend {prefix!r} "
        "(known: smollm2, hf:, openai:, vllm:, scripted:)"
    )
