"""Measured self-improvement: repair, learn from what was repaired, and check on other tasks.

Each round: the current model (the base, then base + the latest adapter) runs the repair
loop on the train tasks; the datasets are built from every train run so far (STaR-style:
what earlier rounds solved stays in the data); a new adapter is trained on the base; then
the base and the trained model repair the eval tasks side by side (repair rate, pass@1,
tokens). The base is evaluated once, in the first round: it does not change.

OUT/
  eval-base/                       run directory: the base on the eval tasks
  round-K/train-run/               run directory: round K's model on the train tasks
  round-K/adapter/                 the adapter trained in round K (with card.json)
  round-K/eval-trained/            run directory: the trained model on the eval tasks
  round-K/table.md, table.json     the side-by-side table, and each phase's seconds
  improve.json                     every round's table and timings
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from selfrepair.agents.adapters import resolve_base
from selfrepair.agents.backends import load_model
from selfrepair.errors import SelfRepairError
from selfrepair.graphs.budget import Budget, Sampling
from selfrepair.graphs.run import repair_task
from selfrepair.metrics import result_row, summarize
from selfrepair.sandbox.core import Sandbox
from selfrepair.store import TrajectoryStore
from selfrepair.training.datasets import dpo_dataset, read_runs, sft_dataset
from selfrepair.training.train import Method, default_lora, train_adapter
from selfrepair.types import Task

console = Console(stderr=True)
TABLE_COLUMNS = ("model", "tasks", "solved", "repair_rate", "pass@1", "tokens", "tokens_per_solved", "wall_seconds")


@dataclass
class ImproveSettings:
    base: str = "smollm2"
    rounds: int = 1
    method: Method = "sft"
    strategy: str = "best-of-n"
    budget: Budget = field(default_factory=lambda: Budget(max_candidates=4))
    sampling: Sampling = field(default_factory=lambda: Sampling(samples=4))
    train_settings: dict[str, Any] = field(default_factory=dict)  # TRL config names
    lora_r: int = 16


def repair_run(
    tasks: list[Task], model_spec: str, sandbox: Sandbox, settings: ImproveSettings, run_dir: Path, label: str
) -> dict[str, Any]:
    """Repair every task with one model into a run directory; returns its summary."""
    model = load_model(model_spec)
    run_dir.mkdir(parents=True)
    started = time.perf_counter()
    trajectories = []
    progress = Progress(
        TextColumn(label), BarColumn(), MofNCompleteColumn(), TextColumn("solved {task.fields[solved]}"),
        TimeElapsedColumn(), console=console,
    )  # fmt: skip
    with TrajectoryStore(run_dir) as store, progress:
        bar = progress.add_task(label, total=len(tasks), solved=0)
        for task in tasks:
            trajectory = repair_task(task, model, sandbox, settings.strategy, settings.budget, store, sampling=settings.sampling)
            store.save(trajectory)
            trajectories.append(trajectory)
            progress.update(bar, advance=1, solved=sum(t.solved for t in trajectories))
    rows = [result_row(t) for t in trajectories]
    summary = summarize(rows) | {"model": model_spec, "seconds": round(time.perf_counter() - started, 1)}
    (run_dir / "results.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


def table_row(name: str, summary: dict[str, Any]) -> dict[str, Any]:
    row = {key: summary.get(key) for key in TABLE_COLUMNS[1:]}
    return {"model": name} | row


def render_table(title: str, rows: list[dict[str, Any]]) -> tuple[Table, str]:
    """The round's table for the terminal (rich) and as Markdown."""
    def cell(value: Any) -> str:
        return f"{value:.3f}" if isinstance(value, float) else str(value)

    table = Table(title=title)
    for column in TABLE_COLUMNS:
        table.add_column(column, justify="left" if column == "model" else "right")
    for row in rows:
        table.add_row(*(cell(row[c]) for c in TABLE_COLUMNS))
    markdown = [f"### {title}", "", "| " + " | ".join(TABLE_COLUMNS) + " |", "|" + "---|" * len(TABLE_COLUMNS)]
    markdown += ["| " + " | ".join(cell(row[c]) for c in TABLE_COLUMNS) + " |" for row in rows]
    return table, "\n".join(markdown) + "\n"


def improve(
    train_tasks: list[Task],
    eval_tasks: list[Task],
    settings: ImproveSettings,
    sandbox: Sandbox,
    out: Path,
    on_round: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Run `settings.rounds` rounds into `out`; returns each round's record. A round whose
    repair run solved no task ends the loop there (there is nothing new to learn from)."""
    if not train_tasks or not eval_tasks:
        raise SelfRepairError("improve needs train tasks and eval tasks (one of the sets is empty)")
    shared = {t.task_id for t in train_tasks} & {t.task_id for t in eval_tasks}
    if shared:
        raise SelfRepairError(f"train and eval tasks overlap ({', '.join(sorted(shared)[:5])}): evaluation would be on trained tasks")
    if out.exists() and any(out.iterdir()):
        raise SelfRepairError(f"{out} exists and is not empty: choose another --out")
    base_path = resolve_base(settings.base)
    out.mkdir(parents=True, exist_ok=True)

    rounds: list[dict[str, Any]] = []
    train_runs: list[Path] = []
    base_eval: dict[str, Any] | None = None
    model_spec = settings.base
    for number in range(1, settings.rounds + 1):
        folder = out / f"round-{number}"
        record: dict[str, Any] = {"round": number, "model": model_spec, "seconds": {}}

        started = time.perf_counter()
        train_summary = repair_run(train_tasks, model_spec, sandbox, settings, folder / "train-run", f"round {number}: repair train tasks")
        record["seconds"]["repair_train"] = round(time.perf_counter() - started, 1)
        record["train_solved"] = train_summary["solved"]
        record["train_repair_rate"] = train_summary["repair_rate"]
        train_runs.append(folder / "train-run")
        if train_summary["solved"] == 0:
            record["stopped"] = f"round {number}: the repair loop solved none of the {len(train_tasks)} train tasks; nothing to learn from, stopping"
            console.print(record["stopped"])
            rounds.append(record)
            break

        started = time.perf_counter()
        sources = read_runs(train_runs)
        build = sft_dataset if settings.method == "sft" else dpo_dataset
        data = build(sources, eval_fraction=0.0)  # the eval tasks are the held-out set
        adapter = folder / "adapter"
        card = train_adapter(
            settings.method, data, base_path, adapter,
            settings=settings.train_settings, lora=default_lora(settings.lora_r), run_dirs=sources.run_dirs,
        )  # fmt: skip
        record["seconds"]["train"] = round(time.perf_counter() - started, 1)
        record["training"] = {"examples": len(data["train"]), "steps": card["steps"], "train_loss": card["train_loss"]}

        if base_eval is None:
            started = time.perf_counter()
            base_eval = repair_run(eval_tasks, settings.base, sandbox, settings, out / "eval-base", "evaluate base")
            record["seconds"]["eval_base"] = round(time.perf_counter() - started, 1)
        started = time.perf_counter()
        trained_spec = f"hf:{base_path}+{adapter}"
        trained_eval = repair_run(eval_tasks, trained_spec, sandbox, settings, folder / "eval-trained", f"round {number}: evaluate trained")
        record["seconds"]["eval_trained"] = round(time.perf_counter() - started, 1)

        record["table"] = [table_row("base", base_eval), table_row(f"round {number} ({settings.method})", trained_eval)]
        table, markdown = render_table(f"round {number}: eval tasks, base vs trained", record["table"])
        console.print(table)
        (folder / "table.md").write_text(markdown, encoding="utf-8")
        (folder / "table.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        rounds.append(record)
        if on_round is not None:
            on_round(record)
        model_spec = trained_spec
    (out / "improve.json").write_text(json.dumps(rounds, indent=2) + "\n", encoding="utf-8")
    return rounds
