"""`selfrepair train sft|dpo|grpo|reviewer`: fine-tune a LoRA adapter with TRL.

Training settings are TRL's (SFTConfig / DPOConfig / GRPOConfig): the common ones are
options (cli/common.py, shared with `improve`), and `--trl-config FILE.json` passes any others under
TRL's own names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from selfrepair.cli.common import (
    BASE_HELP,
    SANDBOX_HELP,
    BatchSize,
    Epochs,
    KeepSuspicious,
    LearningRate,
    LoraRank,
    MaxLength,
    MaxSteps,
    SandboxKind,
    TrlConfig,
    trl_settings,
)
from selfrepair.errors import SelfRepairError

train_app = typer.Typer(
    help="Fine-tune a model (LoRA adapter) on recorded repairs with TRL.", no_args_is_help=True
)

RUNS_HELP = "A run directory (from fix, bench or improve) to learn from; repeat for several."
OUT_HELP = "Folder for the adapter and its card.json (must not exist or be empty)."
BENCHMARK_HELP = (
    "Format of the task files: quixbugs, humanevalfix (HumanEvalPack JSONL), humaneval, swebench."
)


EvalFraction = typer.Option(
    0.1,
    "--eval-fraction",
    min=0.0,
    max=0.9,
    help="Share of tasks held out for the eval loss (split by task).",
)


def report_card(card: dict[str, Any], out: Path, use: str = "--model") -> None:
    losses = card["losses"]
    typer.echo(
        f"{card['method']}: {card['steps']} steps on {card['data']['train_examples']} examples "
        f"({card['data']['train_tasks']} tasks), loss {losses[0]:.4f} -> {losses[-1]:.4f}"
        + (f", eval loss {card['eval_loss']:.4f}" if card.get("eval_loss") is not None else "")
        + f", {card['seconds']} s"
    )
    typer.echo(f"adapter: {out}  (use it with {use} hf:{card['base_path']}+{out})")


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


@train_app.command("reviewer")
def train_reviewer_command(
    runs: list[Path] = typer.Option(..., "--runs", help=RUNS_HELP),
    base: str = typer.Option("smollm2", "--base", help=BASE_HELP),
    out: Path = typer.Option(..., "--out", help=OUT_HELP),
    max_steps: int | None = MaxSteps,
    epochs: float | None = Epochs,
    learning_rate: float | None = LearningRate,
    batch_size: int | None = BatchSize,
    max_length: int | None = MaxLength,
    lora_r: int = LoraRank,
    eval_fraction: float = typer.Option(
        0.2,
        "--eval-fraction",
        min=0.0,
        max=0.9,
        help="Share of tasks held out to measure the verifier (AUC, false accepts; split by task).",
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the class-balancing draw."),
    trl_config: Path | None = TrlConfig,
    keep_suspicious: bool = KeepSuspicious,
) -> None:
    """A verifier: a LoRA adapter that answers "will this candidate pass its tests?" with yes
    or no, trained on the recorded candidates labelled by their tests (balanced, split by task).
    Its score, P(yes), orders best-of-n's candidates (--verifier on bench and fix)."""
    from selfrepair.training.datasets import read_runs
    from selfrepair.training.reviewer import train_reviewer
    from selfrepair.training.train import default_lora

    settings = trl_settings(
        trl_config,
        max_steps=max_steps,
        epochs=epochs,
        learning_rate=learning_rate,
        batch_size=batch_size,
        max_length=max_length,
    )
    sources = read_runs(runs, keep_suspicious=keep_suspicious)
    card = train_reviewer(
        sources,
        base,
        out,
        eval_fraction=eval_fraction,
        settings=settings,
        lora=default_lora(lora_r),
        seed=seed,
    )
    report_card(card, out, use="--verifier")
    held_out = card["validation"]
    if held_out.get("trained"):
        typer.echo(
            f"held-out tasks ({held_out['tasks']} tasks, {held_out['examples']} candidates, "
            f"{held_out['passing']} passing): "
            + "; ".join(
                f"{name} AUC {fmt(held_out[name]['auc'])}, false accepts "
                f"{fmt(held_out[name]['false_accept_rate'])}"
                for name in ("trained", "untrained")
            )
        )


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


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
