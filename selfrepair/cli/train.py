"""`selfrepair train sft|dpo|grpo`: fine-tune a LoRA adapter with TRL.

Training settings are TRL's (SFTConfig / DPOConfig / GRPOConfig): the common ones are
options here (shared with `improve`), and `--trl-config FILE.json` passes any others under
TRL's own names.
"""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Any

import typer

from selfrepair.cli.common import SANDBOX_HELP, SandboxKind
from selfrepair.errors import SelfRepairError
from selfrepair.files import read_input

train_app = typer.Typer(
    help="Fine-tune a model (LoRA adapter) on recorded repairs with TRL.", no_args_is_help=True
)

BASE_HELP = "Base model: smollm2 (the embedded default), hf:PATH_OR_ID, or a model folder."
RUNS_HELP = "A run directory (from fix, bench or improve) to learn from; repeat for several."
OUT_HELP = "Folder for the adapter and its card.json (must not exist or be empty)."
BENCHMARK_HELP = (
    "Format of the task files: quixbugs, humanevalfix (HumanEvalPack JSONL), humaneval, swebench."
)


class Method(str, Enum):
    sft = "sft"
    dpo = "dpo"


def trl_settings(
    config_file: Path | None,
    *,
    max_steps: int | None = None,
    epochs: float | None = None,
    learning_rate: float | None = None,
    batch_size: int | None = None,
    max_length: int | None = None,
    **more: Any,
) -> dict[str, Any]:
    """TRL config values: --trl-config's file first, then the options given on the line."""
    settings: dict[str, Any] = {}
    if config_file is not None:
        try:
            settings = json.loads(read_input(config_file, f"--trl-config {config_file}"))
        except json.JSONDecodeError as error:
            raise SelfRepairError(
                f"--trl-config {config_file}: not valid JSON ({error.msg}, line {error.lineno})"
            ) from None
        if not isinstance(settings, dict):
            raise SelfRepairError(
                f"--trl-config {config_file}: must hold a JSON object of TRL config values"
            )
    given = {
        "max_steps": max_steps,
        "num_train_epochs": epochs,
        "learning_rate": learning_rate,
        "per_device_train_batch_size": batch_size,
        "max_length": max_length,
        **more,
    }
    return settings | {key: value for key, value in given.items() if value is not None}


# Options shared by the training commands (typer reads them from each signature).
MaxSteps = typer.Option(
    None, "--max-steps", min=1, help="Stop after this many optimizer steps (default: one epoch)."
)
Epochs = typer.Option(
    None, "--epochs", min=0.0, help="Passes over the data (TRL's num_train_epochs; default 1)."
)
LearningRate = typer.Option(
    None, "--learning-rate", help="Learning rate (default: 2e-4 SFT, 5e-5 DPO, 1e-5 GRPO)."
)
BatchSize = typer.Option(
    None, "--batch-size", min=1, help="Examples per device and step (default 2)."
)
MaxLength = typer.Option(
    None, "--max-length", min=16, help="Longest prompt + reply in tokens (SFT, DPO; default 1024)."
)
LoraRank = typer.Option(16, "--lora-r", min=1, help="LoRA rank (alpha is twice the rank).")
EvalFraction = typer.Option(
    0.1,
    "--eval-fraction",
    min=0.0,
    max=0.9,
    help="Share of tasks held out for the eval loss (split by task).",
)
TrlConfig = typer.Option(
    None, "--trl-config", help="JSON file of further TRL config values, by TRL's names."
)
KeepSuspicious = typer.Option(
    False,
    "--keep-suspicious",
    help="Also learn from steps whose test run looked like an attempt on the verdict "
    "(left out by default; for studying reward hacks).",
)


def report_card(card: dict[str, Any], out: Path) -> None:
    losses = card["losses"]
    typer.echo(
        f"{card['method']}: {card['steps']} steps on {card['data']['train_examples']} examples "
        f"({card['data']['train_tasks']} tasks), loss {losses[0]:.4f} -> {losses[-1]:.4f}"
        + (f", eval loss {card['eval_loss']:.4f}" if card.get("eval_loss") is not None else "")
        + f", {card['seconds']} s"
    )
    typer.echo(f"adapter: {out}  (use it with --model hf:{card['base_path']}+{out})")


def train_from_runs(
    method: str,
    runs: list[Path],
    base: str,
    out: Path,
    eval_fraction: float,
    settings: dict,
    lora_r: int,
    keep_suspicious: bool,
) -> None:
    from selfrepair.training.datasets import dpo_dataset, read_runs, sft_dataset
    from selfrepair.training.train import default_lora, train_adapter

    sources = read_runs(runs, keep_suspicious=keep_suspicious)
    data = (sft_dataset if method == "sft" else dpo_dataset)(sources, eval_fraction)
    card = train_adapter(
        method,
        data,
        base,
        out,
        settings=settings,
        lora=default_lora(lora_r),
        run_dirs=sources.run_dirs,
        suspicious_left_out=sources.suspicious_left_out,
    )
    report_card(card, out)


@train_app.command("sft")
def train_sft(
    runs: list[Path] = typer.Option(..., "--runs", help=RUNS_HELP),
    base: str = typer.Option("smollm2", "--base", help=BASE_HELP),
    out: Path = typer.Option(..., "--out", help=OUT_HELP),
    max_steps: int | None = MaxSteps,
    epochs: float | None = Epochs,
    learning_rate: float | None = LearningRate,
    batch_size: int | None = BatchSize,
    max_length: int | None = MaxLength,
    lora_r: int = LoraRank,
    eval_fraction: float = EvalFraction,
    trl_config: Path | None = TrlConfig,
    keep_suspicious: bool = KeepSuspicious,
) -> None:
    """Supervised fine-tuning on the replies that passed the tests (rejection sampling):
    each becomes prompt-as-sent -> reply; refinements teach spec + faulty code + feedback -> fix."""
    settings = trl_settings(
        trl_config,
        max_steps=max_steps,
        epochs=epochs,
        learning_rate=learning_rate,
        batch_size=batch_size,
        max_length=max_length,
    )
    train_from_runs("sft", runs, base, out, eval_fraction, settings, lora_r, keep_suspicious)


@train_app.command("dpo")
def train_dpo(
    runs: list[Path] = typer.Option(..., "--runs", help=RUNS_HELP),
    base: str = typer.Option("smollm2", "--base", help=BASE_HELP),
    out: Path = typer.Option(..., "--out", help=OUT_HELP),
    beta: float | None = typer.Option(
        None, "--beta", min=0.0, help="DPO's beta: how far from the base it may go (default 0.1)."
    ),
    max_steps: int | None = MaxSteps,
    epochs: float | None = Epochs,
    learning_rate: float | None = LearningRate,
    batch_size: int | None = BatchSize,
    max_length: int | None = MaxLength,
    lora_r: int = LoraRank,
    eval_fraction: float = EvalFraction,
    trl_config: Path | None = TrlConfig,
    keep_suspicious: bool = KeepSuspicious,
) -> None:
    """Preference tuning (DPO): for one prompt, a reply that passed the tests is preferred
    over one that failed. Needs prompts sampled more than once (e.g. --strategy best-of-n)."""
    settings = trl_settings(
        trl_config,
        max_steps=max_steps,
        epochs=epochs,
        learning_rate=learning_rate,
        batch_size=batch_size,
        max_length=max_length,
        beta=beta,
    )
    train_from_runs("dpo", runs, base, out, eval_fraction, settings, lora_r, keep_suspicious)


@train_app.command("grpo")
def train_grpo(
    benchmark: str = typer.Argument(..., help=BENCHMARK_HELP),
    data: Path | None = typer.Option(None, "--data", help="The task file (not for humaneval)."),
    limit: int | None = typer.Option(
        None, "--limit", min=1, help="Train on the first N tasks only."
    ),
    base: str = typer.Option("smollm2", "--base", help=BASE_HELP),
    out: Path = typer.Option(..., "--out", help=OUT_HELP),
    num_generations: int | None = typer.Option(
        None,
        "--num-generations",
        min=2,
        help="Replies sampled per prompt and compared (default 2).",
    ),
    max_completion_length: int | None = typer.Option(
        None, "--max-completion-length", min=8, help="Longest reply in tokens (default 128)."
    ),
    max_steps: int | None = MaxSteps,
    epochs: float | None = Epochs,
    learning_rate: float | None = LearningRate,
    batch_size: int | None = BatchSize,
    lora_r: int = LoraRank,
    sandbox: SandboxKind = typer.Option(SandboxKind.auto, "--sandbox", help=SANDBOX_HELP),
    trl_config: Path | None = TrlConfig,
) -> None:
    """EXPERIMENTAL: GRPO with an execution reward. Sampled replies to each task are run
    against its tests in the sandbox; the reward is the fraction of tests passed. It runs
    end to end, but no setting has yet been shown to raise a repair rate."""
    from selfrepair.loaders import load_tasks
    from selfrepair.sandbox.choose import open_sandbox
    from selfrepair.training.grpo import execution_reward, grpo_dataset
    from selfrepair.training.train import default_lora, train_adapter

    if data is not None and not data.is_file():
        raise SelfRepairError(f"--data {data}: no such file")
    tasks = load_tasks(benchmark, data)[:limit]
    settings = trl_settings(
        trl_config,
        max_steps=max_steps,
        epochs=epochs,
        learning_rate=learning_rate,
        batch_size=batch_size,
        num_generations=num_generations,
        max_completion_length=max_completion_length,
    )
    box = open_sandbox(sandbox.value)
    try:
        card = train_adapter(
            "grpo",
            grpo_dataset(tasks),
            base,
            out,
            settings=settings,
            lora=default_lora(lora_r),
            reward_funcs=[execution_reward(box)],
            run_dirs=[str(data)] if data else [],
        )
    finally:
        box.close()
    report_card(card, out)
