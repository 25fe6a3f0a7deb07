"""Measured self-improvement: repair, learn from what was repaired, and check on other tasks.

Each round: the current model (the base, then base + the latest adapter) runs the repair
loop on the train tasks; the datasets are built from every train run so far (STaR-style:
what earlier rounds solved stays in the data); a new adapter is trained on the base; then
the base and the trained model repair the eval tasks side by side (repair rate, pass@1,
tokens). The base is evaluated once, in the first round: it does not change.

OUT/
  settings.json                    what this run is (all but the number of rounds)
  eval-base/                       run directory: the base on the eval tasks
  round-K/train-run/               run directory: round K's model on the train tasks
  round-K/adapter/                 the adapter trained in round K (with card.json)
  round-K/eval-trained/            run directory: the trained model on the eval tasks
  round-K/table.md, table.json     the side-by-side table, and each phase's seconds
  improve.json                     every finished round's record

A killed run resumes when started again on the same OUT with the same settings: finished
rounds (table.json) are kept, a run directory continues where it stopped (selfrepair.rundir,
LangGraph's checkpoints), and an adapter is trained unless its round already has one. More
--rounds than before extend a finished run. Nothing here prints: progress and each round's
record go to `report`, for the caller to show.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from selfrepair.agents.adapters import read_card, resolve_base
from selfrepair.errors import SelfRepairError
from selfrepair.executor.core import Executor
from selfrepair.graphs.budget import Budget, Sampling
from selfrepair.graphs.jobs import RepairJob, Rollout
from selfrepair.graphs.run import open_checkpointer
from selfrepair.files import make_directory, write_atomically
from selfrepair.rundir import hold_run_dir, is_empty, prepare_run_dir, write_results
from selfrepair.training.datasets import dpo_dataset, read_runs, sft_dataset
from selfrepair.training.train import Method, default_lora, train_adapter
from selfrepair.types import Task, Trajectory

SETTINGS = "settings.json"
TABLE_COLUMNS = ("model", "tasks", "solved", "repair_rate", "pass@1", "tokens", "tokens_per_solved", "wall_seconds")

# What `improve` tells its caller, as it happens: {"event": "repair", "phase", "done", "total",
# "solved", "tokens"} after each task of a repair phase (and once as it starts), {"event":
# "train", "phase", "examples"} before training, and {"event": "round", "record"} per round.
Report = Callable[[dict[str, Any]], None]


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
    keep_suspicious: bool = False  # train on steps whose run looked like an attempt on the verdict
    engine: str = "hf"  # what generates: "hf" in process, or "vllm" (one server, each round's adapter a LoRA module)


def repair_run(
    tasks: list[Task], model_spec: str, executor: Executor, settings: ImproveSettings, run_dir: Path, phase: str,
    report: Report,
) -> dict[str, Any]:
    """Repair every task with one model into a run directory (resumed when it holds this
    phase already), wherever `executor` runs them; returns its summary."""
    config = {
        "command": "improve", "phase": phase, "model": model_spec, "strategy": settings.strategy,
        "budget": dataclasses.asdict(settings.budget), "sampling": json_safe(dataclasses.asdict(settings.sampling)),
        "tasks": [t.task_id for t in tasks],
    }  # fmt: skip
    executor.load(model_spec)
    store = prepare_run_dir(run_dir, config)
    checkpointer = open_checkpointer(run_dir)
    job = RepairJob(Rollout(settings.strategy, model_spec, settings.budget, settings.sampling), store, checkpointer)
    trajectories: list[Trajectory] = []

    def progress() -> None:
        report({
            "event": "repair", "phase": phase, "done": len(trajectories), "total": len(tasks),
            "solved": sum(t.solved for t in trajectories), "tokens": sum(t.tokens for t in trajectories),
        })  # fmt: skip

    try:
        progress()
        # closing: a phase cut short lets its model go now, not when the generator is collected
        with closing(executor.run(job, tasks, lambda trajectory: None)) as results:
            for trajectory in results:
                trajectories.append(trajectory)
                summary = write_results(run_dir, trajectories, config | {"executor": executor.describe()})
                progress()
    finally:
        store.close()
        checkpointer.conn.close()
    return summary | {"model": model_spec}


def json_safe(value: Any) -> Any:
    """`value` as it reads back from JSON (tuples become lists), so a recorded configuration
    compares equal to the one it was made from."""
    return json.loads(json.dumps(value))


def table_row(name: str, summary: dict[str, Any]) -> dict[str, Any]:
    row = {key: summary.get(key) for key in TABLE_COLUMNS[1:]}
    return {"model": name} | row


def cell(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def markdown_table(title: str, rows: list[dict[str, Any]]) -> str:
    lines = [f"### {title}", "", "| " + " | ".join(TABLE_COLUMNS) + " |", "|" + "---|" * len(TABLE_COLUMNS)]
    lines += ["| " + " | ".join(cell(row[c]) for c in TABLE_COLUMNS) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def open_out(out: Path, settings: ImproveSettings, train_tasks: list[Task], eval_tasks: list[Task]) -> None:
    """Make OUT for this run, or check that it holds this run already (to resume it)."""
    recorded = {
        "settings": json_safe({k: v for k, v in dataclasses.asdict(settings).items() if k != "rounds"}),
        "train_tasks": [t.task_id for t in train_tasks],
        "eval_tasks": [t.task_id for t in eval_tasks],
    }
    if out.exists() and not out.is_dir():
        raise SelfRepairError(f"--out {out} is a file, not a directory")
    if not is_empty(out) and not (out / SETTINGS).is_file():
        raise SelfRepairError(f"--out {out} is not empty and holds no improve run: choose another --out")
    make_directory(out)
    hold_run_dir(out)  # one process at a time, as for a run directory; held before it is read
    if (out / SETTINGS).is_file():
        before = json.loads((out / SETTINGS).read_text(encoding="utf-8"))
        if before != recorded:
            different = sorted(k for k in recorded["settings"] if before["settings"].get(k) != recorded["settings"][k])
            different += [k for k in ("train_tasks", "eval_tasks") if before.get(k) != recorded[k]]
            raise SelfRepairError(
                f"{out} holds an improve run with other settings ({', '.join(different)}); "
                "choose another --out to start a new run"
            )
        return
    write_atomically(out / SETTINGS, json.dumps(recorded, indent=2) + "\n")


def improve(
    train_tasks: list[Task],
    eval_tasks: list[Task],
    settings: ImproveSettings,
    executor: Executor,
    out: Path,
    report: Report = lambda event: None,
) -> list[dict[str, Any]]:
    """Run `settings.rounds` rounds into `out` (resuming what is there), the repair phases
    wherever `executor` runs tasks; returns each round's record. A round whose repair run solved no task ends the loop there (there is nothing
    new to learn from): its record says so under "stopped"."""
    if not train_tasks or not eval_tasks:
        raise SelfRepairError("improve needs train tasks and eval tasks (one of the sets is empty)")
    shared = {t.task_id for t in train_tasks} & {t.task_id for t in eval_tasks}
    if shared:
        raise SelfRepairError(f"train and eval tasks overlap ({', '.join(sorted(shared)[:5])}): evaluation would be on trained tasks")
    base_path = resolve_base(settings.base)
    open_out(out, settings, train_tasks, eval_tasks)

    rounds: list[dict[str, Any]] = []
    train_runs: list[Path] = []
    model_spec = base_spec(settings, base_path)
    for number in range(1, settings.rounds + 1):
        folder = out / f"round-{number}"
        train_runs.append(folder / "train-run")
        if (folder / "table.json").is_file():  # finished before this run was resumed
            record = json.loads((folder / "table.json").read_text(encoding="utf-8"))
        else:
            record = run_round(
                number, folder, model_spec, base_path, train_tasks, eval_tasks, settings, executor, out, train_runs, report
            )
        rounds.append(record)
        write_atomically(out / "improve.json", json.dumps(rounds, indent=2) + "\n")
        report({"event": "round", "record": record})
        if "stopped" in record:
            break
        model_spec = trained_spec(settings, base_path, folder)
    return rounds


def base_spec(settings: ImproveSettings, base_path: str) -> str:
    """The model spec of the base. With vLLM, base and every round's adapter are asked of
    one server per run (the vllm backend's), each adapter loaded into it as a LoRA module."""
    return f"vllm:{base_path}" if settings.engine == "vllm" else settings.base


def trained_spec(settings: ImproveSettings, base_path: str, folder: Path) -> str:
    """The model spec of the base with the adapter trained in round `folder`."""
    return f"{'vllm' if settings.engine == 'vllm' else 'hf'}:{base_path}+{folder / 'adapter'}"


def run_round(
    number: int,
    folder: Path,
    model_spec: str,
    base_path: str,
    train_tasks: list[Task],
    eval_tasks: list[Task],
    settings: ImproveSettings,
    executor: Executor,
    out: Path,
    train_runs: list[Path],
    report: Report,
) -> dict[str, Any]:
    """One round: repair the train tasks, train, evaluate base and trained model. Each phase
    picks up what a killed run left. Seconds are the work's own (the tasks' wall seconds,
    the training's), so they stay true across a resume."""
    record: dict[str, Any] = {"round": number, "model": model_spec, "seconds": {}}
    train_summary = repair_run(train_tasks, model_spec, executor, settings, folder / "train-run", f"round {number}: repair train tasks", report)
    record["seconds"]["repair_train"] = train_summary["wall_seconds"]
    record["train_solved"] = train_summary["solved"]
    record["train_repair_rate"] = train_summary["repair_rate"]
    if train_summary["solved"] == 0:
        record["stopped"] = f"round {number}: the repair loop solved none of the {len(train_tasks)} train tasks; nothing to learn from, stopping"
        return record

    adapter = folder / "adapter"
    sources = read_runs(train_runs, keep_suspicious=settings.keep_suspicious)
    build = sft_dataset if settings.method == "sft" else dpo_dataset
    data = build(sources, eval_fraction=0.0)  # the eval tasks are the held-out set
    card = read_card(adapter)  # an adapter is renamed into place whole: with its card, it is done
    if card is None:
        for leftover in folder.glob(f".{adapter.name}.partial-*"):  # what a killed training left
            shutil.rmtree(leftover)
        report({"event": "train", "phase": f"round {number}: train ({settings.method})", "examples": len(data["train"])})
        card = train_adapter(
            settings.method, data, base_path, adapter,
            settings=settings.train_settings, lora=default_lora(settings.lora_r), run_dirs=sources.run_dirs,
            suspicious_left_out=sources.suspicious_left_out,
        )  # fmt: skip
    record["seconds"]["train"] = card["seconds"]
    record["training"] = {"examples": len(data["train"]), "steps": card["steps"], "train_loss": card["train_loss"]}

    base_eval = repair_run(eval_tasks, base_spec(settings, base_path), executor, settings, out / "eval-base", "evaluate base", report)
    if number == 1:  # the base is the same in every round: its cost is counted once
        record["seconds"]["eval_base"] = base_eval["wall_seconds"]
    trained_eval = repair_run(eval_tasks, trained_spec(settings, base_path, folder), executor, settings, folder / "eval-trained", f"round {number}: evaluate trained", report)
    record["seconds"]["eval_trained"] = trained_eval["wall_seconds"]

    record["table"] = [table_row("base", base_eval), table_row(f"round {number} ({settings.method})", trained_eval)]
    (folder / "table.md").write_text(markdown_table(f"round {number}: eval tasks, base vs trained", record["table"]), encoding="utf-8")
    write_atomically(folder / "table.json", json.dumps(record, indent=2) + "\n")
    return record
