"""`selfrepair serve`: a base model (with an adapter) behind an OpenAI-compatible API."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer
from rich.console import Console

from selfrepair.cli.common import BASE_HELP
from selfrepair.errors import SelfRepairError

console = Console(stderr=True)


class Engine(str, Enum):
    vllm = "vllm"
    transformers = "transformers"


def serve(
    base: str = typer.Option("smollm2", "--base", help=BASE_HELP),
    adapter: Path | None = typer.Option(
        None, "--adapter", help="A trained adapter folder to serve on the base."
    ),
    engine: Engine | None = typer.Option(
        None,
        "--engine",
        help="vllm (CUDA GPU or CPU, from its own environment, made on first use; the adapter "
        "is a LoRA module applied per request) or transformers (CPU or GPU, adapter merged into a cached copy of "
        "the base). Default: vllm where a CUDA GPU is, transformers elsewhere.",
    ),
    port: int = typer.Option(8000, "--port", min=1, max=65535, help="Port on 127.0.0.1."),
    ready_timeout: float = typer.Option(
        900.0, "--ready-timeout", min=1.0, help="Seconds to wait for the server to answer."
    ),
    prepare: bool = typer.Option(
        False,
        "--prepare",
        help="Only make (or repair) the engine's environment, then exit: vllm's takes minutes "
        "and about 3.5 GB, once.",
    ),
) -> None:
    """Serve the base model (with --adapter applied) behind an OpenAI-compatible API on
    127.0.0.1, print the model spec for fix/bench (openai:NAME@URL) once it answers, and run
    until Ctrl-C, SIGTERM or SIGHUP (exit 130, 143, 129), which stop the server and
    everything it started; the server ends too when this process is killed (SIGKILL)."""
    from selfrepair.training.serve import (
        ServerPlan,
        default_engine,
        plan_server,
    )
    from selfrepair.training.serve import (
        serve as run_server,
    )

    chosen = engine.value if engine else default_engine()
    if prepare:
        if chosen != "vllm":
            raise SelfRepairError(
                "--prepare is for --engine vllm (transformers needs no environment of its own)"
            )
        from selfrepair.agents.models.vllm_env import ensure_environment

        with console.status("checking vLLM's environment") as status:
            python = ensure_environment(verify=True, on_step=status.update)
        typer.echo(f"vLLM's environment is ready: {python}")
        return

    # vLLM's environment is made on first use; for transformers an adapter is merged into the base (once).
    with console.status(
        "preparing the model"
        + (f" (merging {adapter} into the base)" if adapter and chosen == "transformers" else "")
    ) as status:
        plan = plan_server(base, adapter, chosen, port, on_step=status.update)
    console.print(f"starting: {' '.join(plan.argv)}")

    def ready(plan: ServerPlan) -> None:
        typer.echo(plan.spec)
        console.print(f"serving {plan.model_name} on {plan.base_url}; Ctrl-C (or SIGTERM) stops it")

    # SIGINT, SIGTERM and SIGHUP unwind the command (selfrepair.cli.main), so the server is stopped on the way out.
    raise typer.Exit(run_server(plan, ready_timeout, ready))
