"""Serve a base model, with a trained adapter, behind an OpenAI-compatible API.

  vllm          `vllm serve BASE --enable-lora --lora-modules NAME=ADAPTER_DIR` (a CUDA GPU):
                the adapter is applied per request, under its own model name.
  transformers  `transformers serve FOLDER` (CPU or GPU). It loads plain model folders and
                takes no adapters, so the adapter is merged into the base once (peft's
                merge_and_unload) into a cache folder keyed by base and adapter, and that is served.

Either way the server runs in the foreground until Ctrl-C, or until an exception unwinds
the wait (the CLI raises one on SIGTERM and SIGHUP), and it is stopped with everything it
started whatever ends the wait. Once it answers, the caller hears the plan, whose spec
(`openai:NAME@http://HOST:PORT/v1`) is what `fix` / `bench` take.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from selfrepair import config
from selfrepair.agents.adapters import base_fingerprint, check_adapter, resolve_base
from selfrepair.errors import SelfRepairError

ENGINES = ("vllm", "transformers")
HOST = "127.0.0.1"  # never another interface: a served model is for this machine
VLLM_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)  # what vLLM's --max-lora-rank accepts


@dataclass(frozen=True)
class ServerPlan:
    argv: list[str]
    model_name: str  # the `model` a request names
    port: int

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}/v1"

    @property
    def spec(self) -> str:
        return f"openai:{self.model_name}@{self.base_url}"


def default_engine() -> str:
    """vLLM where there is a CUDA GPU and vLLM is installed; transformers everywhere else."""
    import torch

    return "vllm" if torch.cuda.is_available() and shutil.which("vllm") else "transformers"


def merged_dir(base_path: str, adapter_dir: Path) -> Path:
    """Base + adapter merged into one plain model folder in the cache, made once per pair
    (keyed by the base's fingerprint and the adapter's files)."""
    digest = hashlib.sha256(json.dumps(base_fingerprint(base_path), sort_keys=True).encode())
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        path = adapter_dir / name
        if path.is_file():
            digest.update(path.read_bytes())
    target = config.cache_dir() / "merged" / f"{adapter_dir.resolve().name}-{digest.hexdigest()[:16]}"
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


def vllm_lora_rank(adapter_dir: Path) -> int:
    rank = json.loads((adapter_dir / "adapter_config.json").read_text(encoding="utf-8")).get("r", 16)
    return next((allowed for allowed in VLLM_LORA_RANKS if allowed >= rank), rank)


def plan_server(base: str, adapter: Path | None, engine: str, port: int) -> ServerPlan:
    """The command line to start and the model name to ask for; merges for transformers."""
    if engine not in ENGINES:
        raise SelfRepairError(f"unknown engine {engine!r}: choose one of {', '.join(ENGINES)}")
    base_path = resolve_base(base)
    if adapter is not None:
        if not adapter.is_dir():
            raise SelfRepairError(f"--adapter {adapter}: no such folder")
        check_adapter(adapter, base_path)
    if engine == "vllm":
        executable = shutil.which("vllm")
        if executable is None:
            raise SelfRepairError("vllm is not installed: pip install 'selfrepair[vllm]' (needs a CUDA GPU), or use --engine transformers")
        argv = [executable, "serve", base_path, "--host", HOST, "--port", str(port)]
        if adapter is None:
            return ServerPlan(argv, base_path, port)
        name = adapter.resolve().name
        argv += ["--enable-lora", "--lora-modules", f"{name}={adapter.resolve()}", "--max-lora-rank", str(vllm_lora_rank(adapter))]
        return ServerPlan(argv, name, port)
    folder = str(merged_dir(base_path, adapter)) if adapter is not None else base_path
    # The server is pinned to one model (the folder): a request must name it exactly.
    argv = [sys.executable, "-m", "transformers.cli.transformers", "serve", folder, "--host", HOST, "--port", str(port)]
    return ServerPlan(argv, folder, port)


def wait_until_ready(process: subprocess.Popen, plan: ServerPlan, timeout_s: float) -> None:
    """Poll /health until the server answers; a server that exits or never answers is an error."""
    url = f"http://{HOST}:{plan.port}/health"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SelfRepairError(f"the server exited with status {process.returncode} before it answered (its log is above)")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    raise SelfRepairError(f"the server did not answer on {url} within {timeout_s:.0f} s")


def stop(process: subprocess.Popen) -> None:
    """End the server and everything it started (its own process group)."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def serve(plan: ServerPlan, ready_timeout_s: float, on_ready: Callable[[ServerPlan], None]) -> int:
    """Start the planned server, tell `on_ready` once it answers, run until it ends or
    Ctrl-C; returns its exit status (0 after Ctrl-C). Any other way out stops it too."""
    # Its own process group, so that stopping it takes its workers along. Its log goes to
    # stderr: stdout is the command's answer.
    process = subprocess.Popen(plan.argv, stdout=sys.stderr, start_new_session=True)
    try:
        wait_until_ready(process, plan, ready_timeout_s)
        on_ready(plan)
        return process.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        stop(process)
