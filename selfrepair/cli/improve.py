"""`selfrepair improve`: self-improvement rounds (repair, train on what was solved, compare
base and trained model on held-out tasks)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from selfrepair.cli.common import SANDBOX_HELP, SandboxKind
from selfrepair.cli.train import (
    BENCHMARK_HELP, BASE_HELP, BatchSize, Epochs, LearningRate, LoraRank, MaxLength, MaxSteps, Method, TrlConfig,
    trl_settings,
)  # fmt: skip
from selfrepair.errors import SelfRepairError


def improve(
    train: Path = typer.Option(..., "--train", help="Task file whose tasks the model repairs and learns from."),
    eval_data: Path = typer.Option(..., "--eval", help="Task file of held-out tasks (none shared with --train) to measure on."),
    benchmark: str = typer.Option("quixbugs", "--format", help=BENCHMARK_HELP),
    base: str = typer.Option("smollm2", "--base", help=BASE_HELP),
    rounds: int = typer.Option(1, "--rounds", min=1, help="Repair-train-evaluate rounds."),
    out: Path = typer.Option(..., "--out", help="Folder for every round's runs, adapters and tables (must not exist or be empty)."),
    method: Method = typer.Option(Method.sft, "--method", help="How to learn from the repairs: sft or dpo."),
    strategy: str = typer.Option("best-of-n", "--strategy", help="Repair strategy: refine, best-of-n or tree."),
    budget: int = typer.Option(4, "--budget", min=1, help="Most candidates per task."),
    samples: int = typer.Option(4, "--samples", min=1, help="Best-of-n: candidates per batched model call."),
    temperature: float = typer.Option(0.8, "--temperature", min=0.0, help="Sampling temperature."),
    max_tokens: int = typer.Option(384, "--max-tokens", min=8, help="Longest reply in tokens."),
    max_steps: Optional[int] = MaxSteps,
    epochs: Optional[float] = Epochs,
    learning_rate: Optional[float] = LearningRate,
    batch_size: Optional[int] = BatchSize,
    max_length: Optional[int] = MaxLength,
    lora_r: int = LoraRank,
    sandbox: SandboxKind = typer.Option(SandboxKind.auto, "--sandbox", help=SANDBOX_HELP),
    trl_config: Optional[Path] = TrlConfig,
) -> None:
    """Self-improvement rounds: repair the --train tasks, train on what was solved, and compare
    base and trained model on the --eval tasks (repair rate, pass@1, tokens), a table per round."""
    from selfrepair.graphs.budget import Budget, Sampling
    from selfrepair.graphs.run import check_strategy
    from selfrepair.loaders import load_tasks
    from selfrepair.sandbox.choose import open_sandbox
    from selfrepair.training.improve import ImproveSettings, improve as run_improve

    check_strategy(strategy)
    for path in (train, eval_data):
        if not path.is_file():
            raise SelfRepairError(f"{path}: no such file")
    train_tasks, eval_tasks = load_tasks(benchmark, train), load_tasks(benchmark, eval_data)
    settings = ImproveSettings(
        base=base,
        rounds=rounds,
        method=method.value,
        strategy=strategy,
        budget=Budget(max_candidates=budget),
        sampling=Sampling(samples=samples, temperature=temperature, max_tokens=max_tokens),
        train_settings=trl_settings(
            trl_config, max_steps=max_steps, epochs=epochs, learning_rate=learning_rate,
            batch_size=batch_size, max_length=max_length,
        ),  # fmt: skip
        lora_r=lora_r,
    )
    box = open_sandbox(sandbox.value)
    try:
        records = run_improve(train_tasks, eval_tasks, settings, box, out)
    finally:
        box.close()
    for record in records:
        if "stopped" in record:
            typer.echo(record["stopped"])
        else:
            base_row, trained_row = record["table"]
            typer.echo(
                f"round {record['round']}: eval repair rate {base_row['repair_rate']:.3f} (base) -> "
                f"{trained_row['repair_rate']:.3f} (trained); tables in {out}"
            )

