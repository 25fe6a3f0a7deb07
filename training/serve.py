"""Serve a base model, with a trained adapter, behind an OpenAI-compatible API.

  vllm          vLLM's OpenAI-compatible server (a CUDA GPU, or the CPU), run from vLLM's own
                environment, made on first use (selfrepair.agents.models.vllm_env): the adapter is a
                LoRA module applied per request, under its own model name; the base answers
                under its path.
  transformers  `transformers serve FOLDER` (CPU or GPU). It loads plain model folders and
                takes no adapters, so the adapter is merged into the base once (peft's
                merge_and_unload) into a cache folder keyed by base and adapter, and that is served.

Either way the server runs in the foreground until an exception unwinds the wait (the CLI
raises one on SIGINT, SIGTERM and SIGHUP), and it is stopped with everything it
started whatever ends the wait. Once it answers, the caller hears the plan, whose spec
(`openai:NAME@http://HOST:PORT/v1`) is what `fix` / `bench` take.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from selfrepair.agents.models import local_server
from selfrepair.agents.models.adapters import base_fingerprint, check_adapter, resolve_base

from selfrepair import config
from selfrepair.errors import SelfRepairError

ENGINES = ("vllm", "transformers")
HOST = local_server.HOST


@dataclass(frozen=True)
class ServerPlan:
    argv: list[str]
    model_name: str  # the `model` a request names
    port: int
    env: dict[str, str] | None = None  # the server's environment, where it is not ours

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}/v1"

    @property
    def spec(self) -> str:
        return f"openai:{self.model_name}@{self.base_url}"


def default_engine() -> str:
    """vLLM where there is a CUDA GPU; transformers everywhere else (vLLM serves on a CPU
    too, when asked for: its environment costs minutes and gigabytes to make)."""
    from selfrepair.agents.models.vllm_env import has_cuda_gpu

    return "vllm" if has_cuda_gpu() else "transformers"


def merged_dir(base_path: str, adapter_dir: Path) -> Path:
    """Base + adapter merged into one plain model folder in the cache, made once per pair
    (keyed by the base's fingerprint and the adapter's files)."""
    digest = hashlib.sha256(json.dumps(base_fingerprint(base_path), sort_keys=True).encode())
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        path = adapter_dir / name
        if path.is_file():
            digest.update(path.read_bytes())
    target = (
        config.cache_dir() / "merged" / f"{adapter_dir.resolve().name}-{digest.hexdigest()[:16]}"
    )
    if (target / "config.json").is_file():
        return target

    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    try:
        model = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32)
        merged = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
        merged.save_pretrained(partial)
        AutoTokenizer.from_pretrained(base_path).save_pretrained(partial)
        partial.chmod(0o755)  # mkdtemp made it private
        partial.rename(target)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return target


def plan_server(
    base: str,
    adapter: Path | None,
    engine: str,
    port: int,
    on_step: Callable[[str], None] = lambda step: None,
) -> ServerPlan:
    """The command line to start and the model name to ask for; for vllm its environment
    is made first where there is none, for transformers the adapter is merged."""
    if engine not in ENGINES:
        raise SelfRepairError(f"unknown engine {engine!r}: choose one of {', '.join(ENGINES)}")
    base_path = resolve_base(base)
    if adapter is not None:
        if not adapter.is_dir():
            raise SelfRepairError(f"--adapter {adapter}: no such folder")
        check_adapter(adapter, base_path)
    if engine == "vllm":
        from selfrepair.agents.models.vllm_env import ensure_environment
        from selfrepair.agents.models.vllm_server import VLLMServer

        name = adapter.resolve().name if adapter is not None else base_path
        server = VLLMServer(
            base_path, adapters={name: adapter} if adapter is not None else None, port=port
        )
        python = ensure_environment(server.engine, on_step=on_step)
        return ServerPlan(server.argv(python), name, port, server.environment())
    folder = str(merged_dir(base_path, adapter)) if adapter is not None else base_path
    # The server is pinned to one model (the folder): a request must name it exactly.
    argv = [
        sys.executable,
        "-m",
        "transformers.cli.transformers",
        "serve",
        folder,
        "--host",
        HOST,
        "--port",
        str(port),
    ]
    return ServerPlan(argv, folder, port)


def serve(plan: ServerPlan, ready_timeout_s: float, on_ready: Callable[[ServerPlan], None]) -> int:
    """Start the planned server, tell `on_ready` once it answers, run until it ends; returns
    its exit status. Any way out (Ctrl-C and the CLI's stop signals unwind the wait) stops
    it. Its log goes to stderr: stdout is the command's answer."""
    process = local_server.start(plan.argv, plan.env, sys.stderr)
    try:
        local_server.wait_until_ready(process, plan.port, ready_timeout_s)
        on_ready(plan)
        return process.wait()
    finally:
        local_server.stop(process)
