"""What the commands share: option choices and help texts, the per-task budget options, the
training options and TRL settings, the progress display, and the checks made before a run directory exists."""

from __future__ import annotations

import dataclasses
import json
import shlex
import sys
from enum import Enum
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from selfrepair.agents.models.backends import SPECS
from selfrepair.errors import SelfRepairError
from selfrepair.files import read_input
from selfrepair.loaders import LOADERS
from selfrepair.settings import Budget
from selfrepair.strategy import Strategy as StrategySettings
from selfrepair.strategy import read_strategy

FORMATS = ", ".join(LOADERS)  # the task-file formats the loaders know


class Strategy(str, Enum):
    refine = "refine"
    best_of_n = "best-of-n"
    tree = "tree"
    # Repository tasks only (fix --issue, bench swebench): one suspect function at a time.
    localise_repair = "localise-repair"


class SandboxKind(str, Enum):
    auto = "auto"
    docker = "docker"
    local = "local"


MODEL_HELP = (
    f"Model spec, one of: {SPECS}. Default: smollm2. `selfrepair models list` explains each."
)
BUDGET_HELP = "Most candidates (model replies) to try per task."
SANDBOX_HELP = "Where tests run: auto (Docker when a daemon answers and the image is built, else local), docker, local."
EXECUTOR_HELP = (
    "Where tasks run: local (threads of this process, --jobs at once), ray (the Ray cluster this machine "
    "belongs to, else a Ray instance of its own) or ray:ADDRESS (e.g. ray:10.0.0.5:6379): one worker per "
    "node, --jobs at once on each. Needs the ray extra."
)
QUIET_HELP = "No progress display; print only the result."
ROLE_HELP = (
    "Model spec for the {role} (default: --model), e.g. an adapter of the same base: "
    "hf:BASE+ADAPTER_DIR or vllm:BASE+ADAPTER_DIR (adapters of one base share it: one copy "
    "with hf, one server with vLLM)."
)
Reviewer = typer.Option(None, "--reviewer", help=ROLE_HELP.format(role="reviewer"))
Refiner = typer.Option(None, "--refiner", help=ROLE_HELP.format(role="refiner"))
Verifier = typer.Option(
    None,
    "--verifier",
    help="best-of-n: a verifier (smollm2 or hf:BASE+ADAPTER_DIR, from `selfrepair train "
    "reviewer`) scores each candidate before its tests run; the most promising is tested "
    "first and the first pass ends the search (fewer sandbox runs).",
)


def role_config(
    reviewer: str | None, refiner: str | None, verifier: str | None, strategy: str
) -> dict[str, Any]:
    """The roles given on the line, as a run directory's configuration records them (nothing
    when none is), checked before the run directory exists."""
    from selfrepair.graphs.run import check_roles

    check_roles(verifier, strategy)
    roles = {"reviewer": reviewer, "refiner": refiner, "verifier": verifier}
    given = {name: spec for name, spec in roles.items() if spec is not None}
    return {"roles": given} if given else {}


JSON_HELP = "Print one JSON object with the result on stdout (no progress display)."

# The rest of the per-task budget, beside --budget (typer reads them from each signature).
MaxTokens = typer.Option(
    Budget.max_tokens,
    "--max-tokens",
    min=1,
    help="Most tokens (prompts and replies, the reviewer's included) to spend per task.",
)
MaxSeconds = typer.Option(
    Budget.max_seconds,
    "--max-seconds",
    min=1.0,
    help="Most wall-clock seconds to spend per task (kept across a resume). It binds model "
    "calls and test runs alike: one still running then is cut, and the task ends as "
    '"time budget spent" (a second or two later).',
)

Seed = typer.Option(
    0,
    "--seed",
    help="Sampling seed: each model call is seeded from it, the task and the step, so a rerun "
    "draws the same samples (with any --jobs).",
)


StrategyFile = typer.Option(
    None,
    "--strategy-file",
    help="A strategy file (JSON, as `selfrepair tune` writes OUT/strategy.json): its graph, "
    "sampling, prompt templates, feedback format and budgets (never above --budget and "
    "--max-tokens). Function-level tasks only; not with --strategy.",
)


def strategy_from_file(
    path: Path | None, strategy: Enum | None, *, repository: bool
) -> StrategySettings | None:
    """The strategy a --strategy-file holds (screened as `tune` screens a proposal), or None
    without one."""
    if path is None:
        return None
    if strategy is not None:
        raise SelfRepairError("--strategy-file holds the strategy: give it or --strategy, not both")
    if repository:
        raise SelfRepairError("--strategy-file is for function-level tasks, not repository ones")
    return read_strategy(path)


def budget_config(budget: Budget) -> dict[str, Any]:
    """The budget as a run directory's configuration records it."""
    return dataclasses.asdict(budget)


# The training commands' options and settings, shared by `train` and `improve`.
BASE_HELP = "Base model: smollm2 (the embedded default), hf:PATH_OR_ID, or a model folder."


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
TrlConfig = typer.Option(
    None, "--trl-config", help="JSON file of further TRL config values, by TRL's names."
)
KeepSuspicious = typer.Option(
    False,
    "--keep-suspicious",
    help="Also learn from steps whose test run looked like an attempt on the verdict "
    "(left out by default; for studying reward hacks).",
)


ExecutorOption = typer.Option("local", "--executor", help=EXECUTOR_HELP)


def executor_line(executor: dict[str, Any]) -> str:
    """An executor's description (Executor.describe) in a few words."""
    nodes = f"{executor['nodes']} node{'s' if executor['nodes'] != 1 else ''}"
    retries = (
        f", {executor['retries']} task(s) sent again after a worker died"
        if executor["retries"]
        else ""
    )
    return f"{executor['name']}, {nodes} x {executor['jobs_per_node']} job(s), {executor['sandbox']} sandbox{retries}"


def command_line() -> str:
    """This command as typed, recorded in summary.json."""
    return " ".join(shlex.quote(a) for a in ["selfrepair", *sys.argv[1:]])


class Display:
    """A rich progress bar on stderr (candidates or tasks, solved, tokens, elapsed), or
    nothing with --quiet / --json."""

    def __init__(self, enabled: bool, description: str, total: int) -> None:
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("solved {task.fields[solved]}"),
            TextColumn("{task.fields[tokens]:,} tokens"),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            disable=not enabled,
            transient=False,
        )
        self.task = self.progress.add_task(description, total=total, solved=0, tokens=0)

    def update(self, **fields: Any) -> None:
        self.progress.update(self.task, **fields)

    def __enter__(self) -> Display:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()
