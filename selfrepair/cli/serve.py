"""`selfrepair serve`: a base model (with an adapter) behind an OpenAI-compatible API."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from selfrepair.cli.train import BASE_HELP

console = Console(stderr=True)


class Engine(str, Enum):
    vllm = "vllm"
    transformers = "transformers"


def serve(
    base: str = typer.Option("smollm2", "--base", help=BASE_HELP),
    adapter: Optional[Path] = typer.Option(None, "--adapter", help="A trained adapter folder to serve on the base."),
    engine: Optional[Engine] = typer.Option(
        None, "--engine", help="vllm (CUDA GPU, adapter applied per request) or transformers (CPU or GPU, "
        "adapter merged into a cached copy of the base). Default: vllm where a GPU and vllm are present."
    ),
    port: int = typer.Option(8000, "--port", min=1, max=65535, help="Port on 127.0.0.1."),
    ready_timeout: float = typer.Option(600.0, "--ready-timeout", min=1.0, help="Seconds to wait for the server to answer."),
) -> None:
    """Serve the base model (with --adapter applied) behind an OpenAI-compatible API on
    127.0.0.1, print the model spec for fix/bench (openai:NAME@URL) once it answers, and run
    until Ctrl-C (exit 0) or SIGTERM / SIGHUP (exit 143 / 129); the server stops with it."""
    from selfrepair.training.serve import ServerPlan, default_engine, plan_server, serve as run_server

    chosen = engine.value if engine else default_engine()
    # For transformers an adapter is merged into the base first (once; cached after).
    with console.status("preparing the model" + (f" (merging {adapter} into the base)" if adapter and chosen == "transformers" else "")):
        plan = plan_server(base, adapter, chosen, port)
    console.print(f"starting: {' '.join(plan.argv)}")

    def ready(plan: ServerPlan) -> None:
        typer.echo(plan.spec)
        console.print(f"serving {plan.model_name} on {plan.base_url}; Ctrl-C (or SIGTERM) stops it")

    raise typer.Exit(run_server(plan, ready_timeout, ready))
