"""vLLM's OpenAI-compatible server, run from vLLM's own environment (vllm_env) on a CUDA GPU
or on the CPU. Adapters are served as LoRA modules on the one base, never merged: named at
start (`--lora-modules NAME=DIR`), or loaded while it runs (POST /v1/load_lora_adapter, which
vLLM offers when VLLM_ALLOW_RUNTIME_LORA_UPDATING is set).

On the CPU it runs in float32 (bfloat16 is slower there) and eager (compiling the model
costs minutes at every start, because vLLM's compile cache fails to reload on CPU; eager
starts in about a minute at much the same speed), with a 2 GiB KV cache unless
VLLM_CPU_KVCACHE_SPACE says otherwise.

The `vllm` backend shares servers (`shared_server`): one per base model in a process, each
adapter loaded into it on first use, all stopped when the process exits; so `improve`
compares base and trained model on the same server, one server for the whole run.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import subprocess
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO

from selfrepair.agents.models import local_server
from selfrepair.agents.models.vllm_env import Flavour, ensure_environment, flavour

from selfrepair import config
from selfrepair.errors import SelfRepairError

LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)  # what vLLM's --max-lora-rank accepts
LAUNCHER = Path(__file__).with_name("vllm_launch.py")
READY_TIMEOUT_S = 900.0  # a cold start on a loaded CPU, import and model load, takes minutes


def lora_rank(adapter: Path) -> int:
    """The smallest rank vLLM accepts that covers the adapter's (vLLM reserves room for it)."""
    try:
        rank = int(json.loads((adapter / "adapter_config.json").read_text(encoding="utf-8"))["r"])
    except (OSError, KeyError, ValueError) as error:
        raise SelfRepairError(f"{adapter} is not a PEFT LoRA adapter folder: {error}") from None
    allowed = [r for r in LORA_RANKS if r >= rank]
    if not allowed:
        raise SelfRepairError(
            f"{adapter}: LoRA rank {rank} is above the {LORA_RANKS[-1]} vLLM serves"
        )
    return allowed[0]


def adapter_name(adapter: Path) -> str:
    """A name per adapter folder: rounds' adapters share a folder name (round-K/adapter)."""
    resolved = adapter.resolve()
    return f"{resolved.name}-{hashlib.sha256(str(resolved).encode()).hexdigest()[:8]}"


class VLLMServer:
    """One server process: `start()` it (or use it as a context manager), ask it through
    `base_url` with the model names it serves, `stop()` it."""

    def __init__(
        self,
        base: str,
        adapters: Mapping[str, Path] | None = None,
        port: int | None = None,
        max_lora_rank: int | None = None,
        runtime_lora: bool = False,
        engine: Flavour | None = None,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.base = base  # a folder or model id; also the model name of the base
        self.adapters = {name: Path(path).resolve() for name, path in (adapters or {}).items()}
        self.port = port or local_server.free_port()
        ranks = [lora_rank(path) for path in self.adapters.values()]
        self.max_lora_rank = max([max_lora_rank or 0, *ranks]) or None
        self.runtime_lora = runtime_lora
        self.engine = engine or flavour()
        self.extra_args = extra_args
        self.loaded: set[str] = set(self.adapters)
        self.process: subprocess.Popen | None = None
        self.log_path: Path | None = None
        self.lock = threading.Lock()

    @property
    def base_url(self) -> str:
        return f"http://{local_server.HOST}:{self.port}/v1"

    def spec(self, model_name: str) -> str:
        return f"openai:{model_name}@{self.base_url}"

    def argv(self, python: Path) -> list[str]:
        argv = [
            str(python),
            str(LAUNCHER),
            "--model",
            self.base,
            "--host",
            local_server.HOST,
            "--port",
            str(self.port),
        ]
        if self.engine.device == "cpu":
            # Without chunked prefill a prompt is prefilled in one step: vLLM's CPU build (0.32)
            # splits one longer than its 2048-token step, then rewinds a seeded request's
            # generator, which a CPU generator cannot do, and the engine dies.
            argv += ["--dtype", "float32", "--enforce-eager", "--no-enable-chunked-prefill"]
        if self.max_lora_rank or self.runtime_lora:
            argv += ["--enable-lora", "--max-lora-rank", str(self.max_lora_rank or 16)]
        if self.adapters:
            argv += ["--lora-modules", *(f"{name}={path}" for name, path in self.adapters.items())]
        return argv + list(self.extra_args)

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env["VLLM_NO_USAGE_STATS"] = "1"  # vLLM would report usage to its makers over the network
        if self.runtime_lora:
            env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] = "True"
        if self.engine.device == "cpu":
            env.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
        return env

    def start(
        self,
        ready_timeout_s: float = READY_TIMEOUT_S,
        log: IO | None = None,
        on_step: Callable[[str], None] = lambda s: None,
    ) -> VLLMServer:
        """Start it and wait until it answers. Its output goes to `log`, or else to a file
        in the cache (named in the error when it does not come up)."""
        python = ensure_environment(self.engine, on_step=on_step)
        on_step(f"starting vLLM's server for {self.base} on port {self.port}")
        if log is None:
            logs = config.cache_dir() / "vllm-env" / "logs"
            logs.mkdir(parents=True, exist_ok=True)
            self.log_path = logs / f"server-{self.port}.log"
            with open(self.log_path, "w", encoding="utf-8") as file:
                self.process = local_server.start(self.argv(python), self.environment(), file)
        else:
            self.process = local_server.start(self.argv(python), self.environment(), log)
        try:
            local_server.wait_until_ready(self.process, self.port, ready_timeout_s, self.log_path)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.process is not None:
            local_server.stop(self.process)

    def __enter__(self) -> VLLMServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def model_for(self, adapter: Path | None) -> str:
        """The model name that asks for `adapter` (the base's with none), loading the
        adapter into the running server first where it is new to it."""
        if adapter is None:
            return self.base
        name = adapter_name(adapter)
        with self.lock:
            if name not in self.loaded:
                self.load_adapter(name, adapter)
                self.loaded.add(name)
        return name

    def load_adapter(self, name: str, adapter: Path) -> None:
        if not self.runtime_lora:
            raise SelfRepairError(
                f"this vLLM server was started without runtime LoRA loading: cannot add {adapter}"
            )
        if lora_rank(adapter) > (self.max_lora_rank or 0):
            raise SelfRepairError(
                f"{adapter}: LoRA rank above the server's maximum of {self.max_lora_rank}"
            )
        body = json.dumps({"lora_name": name, "lora_path": str(adapter.resolve())}).encode()
        request = urllib.request.Request(
            f"{self.base_url}/load_lora_adapter",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=300):
                pass
        except urllib.error.HTTPError as error:
            detail = error.read().decode(errors="replace").strip()
            raise SelfRepairError(
                f"vLLM refused the adapter {adapter} (HTTP {error.code}): {detail}"
            ) from None
        except urllib.error.URLError as error:
            raise SelfRepairError(
                f"cannot reach the vLLM server at {self.base_url}: {error.reason}"
            ) from None


# The backend's servers: one per base model in this process.
SHARED: dict[str, VLLMServer] = {}
SHARED_LOCK = threading.Lock()
DEFAULT_SHARED_RANK = 16  # the project's default LoRA rank (train --lora-r)


def shared_server(base: str, rank: int) -> VLLMServer:
    """This process's server for `base`, started on first use with room for LoRA adapters
    of rank `rank` (at least the project's default); one needing more replaces it."""
    with SHARED_LOCK:
        server = SHARED.get(base)
        if server is not None and (server.max_lora_rank or 0) >= rank:
            return server
        if server is not None:
            server.stop()
        engine = flavour()
        # On a GPU it shares the card with training (improve trains between its phases).
        extra = ("--gpu-memory-utilization", "0.45") if engine.device == "cuda" else ()
        server = VLLMServer(
            base,
            max_lora_rank=max(rank, DEFAULT_SHARED_RANK),
            runtime_lora=True,
            engine=engine,
            extra_args=extra,
        )
        SHARED[base] = server.start()
        return server


@atexit.register
def stop_shared_servers() -> None:
    with SHARED_LOCK:
        for server in SHARED.values():
            server.stop()
        SHARED.clear()
