"""`selfrepair improve`: self-improvement rounds (repair or label the train tasks, train on
that, compare base and every round on held-out tasks with intervals and tests).
training.improve does the work and reports what happens as records; this module shows them."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from selfrepair.cli.common import (
    BASE_HELP,
    BUDGET_HELP,
    FORMATS,
    QUIET_HELP,
    SANDBOX_HELP,
    BatchSize,
    Display,
    Epochs,
    ExecutorOption,
    KeepSuspicious,
    LearningRate,
    LoraRank,
    MaxLength,
    MaxSeconds,
    MaxSteps,
    MaxTokens,
    Method,
    SandboxKind,
    Strategy,
    TrlConfig,
    strategy_from_file,
    trl_settings,
)
from selfrepair.errors import SelfRepairError


class Engine(str, Enum):
    hf = "hf"
    vllm = "vllm"


def improve(
    train: Path = typer.Option(
        ..., "--train", help="Task file whose tasks the model repairs and learns from."
    ),
    eval_data: Path = typer.Option(
        ..., "--eval", help="Task file of held-out tasks (none shared with --train) to measure on."
    ),
    benchmark: str = typer.Option(
        "quixbugs", "--format", help=f"Format of --train and --eval: {FORMATS}."
    ),
    ood: Path | None = typer.Option(
        None,
        "--ood",
        help="Task file of an out-of-distribution check (e.g. QuixBugs when training on synthesized "
        "bugs), evaluated and compared like --eval.",
    ),
    ood_format: str = typer.Option("quixbugs", "--ood-format", help=f"Format of --ood: {FORMATS}."),
    base: str = typer.Option("smollm2", "--base", help=BASE_HELP),
    rounds: int = typer.Option(
        1,
        "--rounds",
        min=1,
        help="Repair-train-evaluate rounds (more than a finished run had extend it).",
    ),
    out: Path = typer.Option(
        ...,
        "--out",
        help="Folder for every round's runs, adapters and tables. Give the folder of a killed run "
        "(same settings) to resume it.",
    ),
    method: Method = typer.Option(
        Method.sft, "--method", help="How to learn from the repairs: sft or dpo."
    ),
    strategy: Strategy = typer.Option(
        Strategy.best_of_n,
        "--strategy",
        help="Repair strategy on the train tasks: refine, best-of-n or tree "
        "(not with --unlabeled).",
    ),
    strategy_file: Path | None = typer.Option(
        None,
        "--strategy-file",
        help="A strategy file (as `selfrepair tune` writes it): the train phase's graph, "
        "sampling, prompts, feedback format and budgets (never above --budget, --max-tokens), "
        "in place of --strategy, --samples, --temperature and --reply-tokens; evaluation keeps "
        "its own samples and temperature, with the file's prompts.",
    ),
    unlabeled: bool = typer.Option(
        False,
        "--unlabeled",
        help="Label-free (LMSI): the train tasks' tests never run; the model writes calls of "
        "the function, candidates that behave alike on them vote, and a confident majority is the label.",
    ),
    budget: int = typer.Option(
        4,
        "--budget",
        min=1,
        help=BUDGET_HELP + " On train tasks; with --unlabeled, the samples that vote.",
    ),
    max_tokens: int = MaxTokens,
    max_seconds: float = MaxSeconds,
    samples: int = typer.Option(
        4, "--samples", min=1, help="Best-of-n: candidates per batched model call."
    ),
    temperature: float = typer.Option(0.8, "--temperature", min=0.0, help="Sampling temperature."),
    reply_tokens: int = typer.Option(384, "--reply-tokens", min=8, help="Longest reply in tokens."),
    eval_samples: int = typer.Option(
        4,
        "--eval-samples",
        min=1,
        help="k: independent samples per eval task (pass@1, pass@k, repair rate within k).",
    ),
    eval_temperature: float = typer.Option(
        0.8, "--eval-temperature", min=0.0, help="Sampling temperature of evaluation."
    ),
    seed: int = typer.Option(
        0,
        "--seed",
        help="Sampling seed: evaluation draws with it, round K's train phase with seed+K.",
    ),
    max_steps: int | None = MaxSteps,
    epochs: float | None = Epochs,
    learning_rate: float | None = LearningRate,
    batch_size: int | None = BatchSize,
    max_length: int | None = MaxLength,
    lora_r: int = LoraRank,
    sandbox: SandboxKind = typer.Option(SandboxKind.auto, "--sandbox", help=SANDBOX_HELP),
    executor_spec: str = ExecutorOption,
    jobs: int = typer.Option(
        1,
        "--jobs",
        "-j",
        min=1,
        help="Repair phases: tasks to run in parallel (on each node, with --executor ray).",
    ),
    engine: Engine = typer.Option(
        Engine.hf,
        "--engine",
        help="What generates the repairs: hf (transformers in process) or vllm (one vLLM "
        "server for the run, from its own environment, made on first use; base and each round's adapter, loaded "
        "as a LoRA module, are asked of it).",
    ),
    trl_config: Path | None = TrlConfig,
    keep_suspicious: bool = KeepSuspicious,
    quiet: bool = typer.Option(False, "--quiet", "-q", help=QUIET_HELP),
) -> None:
    """Self-improvement rounds: repair the --train tasks (or, --unlabeled, label them by
    self-consistency), train an adapter on what was learnt, and compare base and every round on
    the --eval (and --ood) tasks: pass@1, pass@k and repair rate from k seeded samples per task,
    95% paired bootstrap intervals of each difference and exact sign (McNemar) tests. The repair
    phases run wherever --executor says; training runs here."""
    from selfrepair.executor import open_executor
    from selfrepair.loaders import load_tasks
    from selfrepair.settings import Budget, Sampling
    from selfrepair.training.evaluate import Evaluation
    from selfrepair.training.improve import ImproveSettings
    from selfrepair.training.improve import improve as run_improve

    for path in (train, eval_data, *([ood] if ood else [])):
        if not path.is_file():
            raise SelfRepairError(f"{path}: no such file")
    if unlabeled and strategy != Strategy.best_of_n:
        raise SelfRepairError(
            "--unlabeled has its own train phase (self-consistency): --strategy does not apply"
        )
    tuned = strategy_from_file(
        strategy_file, None if strategy is Strategy.best_of_n else strategy, repository=False
    )
    train_tasks, eval_tasks = load_tasks(benchmark, train), load_tasks(benchmark, eval_data)
    ood_tasks = load_tasks(ood_format, ood) if ood else None
    limits = Budget(max_candidates=budget, max_tokens=max_tokens, max_seconds=max_seconds)
    settings = ImproveSettings(
        base=base,
        rounds=rounds,
        method=method.value,
        strategy=tuned.graph if tuned else strategy.value,
        budget=tuned.budget(limits) if tuned else limits,
        sampling=tuned.sampling()
        if tuned
        else Sampling(samples=samples, temperature=temperature, max_tokens=reply_tokens),
        train_settings=trl_settings(
            trl_config,
            max_steps=max_steps,
            epochs=epochs,
            learning_rate=learning_rate,
            batch_size=batch_size,
            max_length=max_length,
        ),
        lora_r=lora_r,
        keep_suspicious=keep_suspicious,
        unlabeled=unlabeled,
        evaluation=Evaluation(samples=eval_samples, temperature=eval_temperature),
        seed=seed,
        engine=engine.value,
    )
    executor = open_executor(executor_spec, sandbox=sandbox.value, jobs=jobs)
    if (
        engine is Engine.vllm
    ):  # made once, in minutes: shown here rather than inside the first phase
        from selfrepair.agents.models.vllm_env import ensure_environment

        with Console(stderr=True, quiet=quiet).status("vLLM's environment") as status:
            ensure_environment(on_step=status.update)
    shown = Shown(not quiet)
    try:
        run_improve(
            train_tasks, eval_tasks, settings, executor, out, shown.report, ood_tasks=ood_tasks
        )
    finally:
        shown.end_phase()
        executor.close()
        if engine is Engine.vllm:
            from selfrepair.agents.models.vllm_server import stop_shared_servers

            stop_shared_servers()
    typer.echo(f"tables and runs in {out} (comparison.md; `selfrepair report {out}` draws them)")


class Shown:
    """What `improve` reports, shown: a progress bar per repair phase and a line per training
    on stderr; each round's table (or why the rounds stopped) on stdout."""

    def __init__(self, progress: bool) -> None:
        self.progress = progress
        self.phase: str | None = None
        self.display: Display | None = None
        self.errors = Console(stderr=True)

    def report(self, event: dict[str, Any]) -> None:
        if event["event"] == "repair":
            if event["phase"] != self.phase:
                self.end_phase()
                self.phase = event["phase"]
                self.display = Display(self.progress, event["phase"], event["total"]).__enter__()
            self.display.update(
                completed=event["done"], solved=event["solved"], tokens=event["tokens"]
            )
        elif event["event"] == "train":
            self.end_phase()
            if self.progress:
                self.errors.print(f"{event['phase']} on {event['examples']} examples")
        else:
            self.end_phase()
            print_round(event["record"])

    def end_phase(self) -> None:
        if self.display is not None:
            self.display.__exit__(None, None, None)
        self.phase = self.display = None


def print_round(record: dict[str, Any]) -> None:
    if "stopped" in record:
        typer.echo(record["stopped"])
        return
    from selfrepair.training.evaluate import COLUMNS, rows

    learnt = record["training"]["examples"]
    facts = [f"{learnt['count']} examples from {learnt['tasks']} tasks ({learnt['labels']} labels)"]
    if "pseudo_label_audit" in record:
        audit = record["pseudo_label_audit"]
        facts.append(
            f"pseudo-labels right by the hidden tests: {audit['correct']} of {audit['labelled']}"
        )
    facts.append(
        "seconds: "
        + ", ".join(f"{phase} {seconds:.0f}" for phase, seconds in record["seconds"].items())
    )
    typer.echo(f"round {record['round']}: " + "; ".join(facts))
    for eval_set, result in record["comparison"].items():
        table = Table(
            title=f"{eval_set}: {result['tasks']} tasks, {result['samples']} samples each, after round {record['round']}"
        )
        for column in COLUMNS:
            table.add_column(column, justify="left" if column == "model" else "right")
        for row in rows(result):
            table.add_row(*row)
        Console().print(table)
