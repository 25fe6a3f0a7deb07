"""Model specs: the one list of the forms `--model` takes, and the factory that makes a Model
from a spec string. README's table of specs, the CLI's help and LangGraph Studio's context
form are all drawn from (or checked against) SPEC_FORMS.

Backends are imported here on demand, because torch, transformers and vllm take seconds to
import and most callers need one of them at most.
"""

from __future__ import annotations

from pathlib import Path

from selfrepair.agents.models.protocol import Model

from selfrepair.errors import SelfRepairError
from selfrepair.types import Message

SPEC_FORMS = [
    ("smollm2", "the embedded default (SmolLM2-135M-Instruct, pulled once)"),
    ("hf:PATH_OR_ID[+ADAPTER_DIR]", "transformers in process (CPU or GPU), optional PEFT adapter"),
    ("openai:NAME@BASE_URL", "any OpenAI-compatible server (vLLM, `transformers serve`, an API)"),
    (
        "vllm:NAME_OR_PATH[+ADAPTER_DIR]",
        "vLLM (GPU or CPU; in process, or its server from its own environment), optional LoRA adapter",
    ),
    (
        "scripted:FILE",
        "replies from a JSON list in call order (strings, or slow {reply, seconds}), or lists keyed by task (for tests)",
    ),
]
SPECS = ", ".join(form for form, _ in SPEC_FORMS)  # the forms in one line, for help texts


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
    """Make the model a spec string names."""
    prefix, colon, rest = spec.strip().partition(":")
    if prefix == "smollm2" and not colon:
        from selfrepair.agents.models.hf import HFModel
        from selfrepair.agents.models.smollm2 import ensure_smollm2

        return HFModel(str(ensure_smollm2()), spec=spec)
    if not colon or not rest:
        raise SelfRepairError(f"bad model spec {spec!r}: expected one of {SPECS}")
    if prefix == "hf":
        from selfrepair.agents.models.hf import HFModel

        base, adapter = split_adapter(spec, rest)
        return HFModel(base, adapter=adapter, spec=spec)
    if prefix == "openai":
        name, at, base_url = rest.partition("@")
        if not at or not name or not base_url:
            raise SelfRepairError(f"model spec {spec!r}: expected openai:NAME@BASE_URL")
        from selfrepair.agents.models.openai_compatible import OpenAIModel

        return OpenAIModel(name, base_url, spec=spec)
    if prefix == "vllm":
        from selfrepair.agents.models.vllm_backend import VLLMModel

        base, adapter = split_adapter(spec, rest)
        return VLLMModel(base, adapter=adapter, spec=spec)
    if prefix == "scripted":
        from selfrepair.agents.models.scripted import ScriptedModel

        return ScriptedModel(rest, spec=spec)
    raise SelfRepairError(f"bad model spec {spec!r}: unknown backend {prefix!r} (known: {SPECS})")


def check_reachable(model: Model) -> None:
    """In-process backends are reachable once loaded; a server is asked for one token, so an
    unreachable one is refused before any work starts."""
    if model.spec.startswith("openai:"):
        model.generate(
            [Message(role="user", content="Say OK.")], n=1, temperature=0.0, max_tokens=1
        )
