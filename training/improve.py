"""Measured self-improvement: repair, learn from what was repaired, and check on other tasks.

Each round K (STaR / ReST-EM iterations):
  1. the current model (the base, then base + round K-1's adapter) works on the train tasks.
     Labelled: the repair loop (`strategy`), whose test verdicts label the replies. Label-free
     (`unlabeled`, LMSI): the self-consistency graph (graphs.consensus), which never runs the
     tests and labels by the candidates' agreement on calls the model wrote.
  2. a new adapter is trained from the base on the data of every round so far (training.datasets:
     SFT on the passing replies, refinements included (CYCLE); or DPO on sibling pairs).
  3. the trained model is evaluated on every eval set (the held-out tasks; an out-of-distribution
     set where one is given) as training.evaluate says: k seeded samples per task. The base is
     evaluated once, in round 1, the same way and with the same seeds.
  4. base and every round so far are compared task by task (selfrepair.comparison): estimates
     with intervals, paired differences with intervals and exact sign tests; and again
     clustered by the function each bug is in (selfrepair.codesplit.function_of).

Why each adapter is trained from the base rather than continued from the last one: ReST-EM
(and STaR) fine-tune the base model in every iteration on all the data so far, to limit drift
and overfitting to earlier rounds' own samples; the latest adapter's part is to generate the
next round's data. The adapter's card records this (`provenance`).

Seeds: evaluation samples with `seed` (the same draws for base and rounds); round K's train
phase with `seed + K` (each round explores afresh, and a rerun explores the same way).

OUT/
  settings.json                    what this run is (all but the number of rounds)
  eval-base/, ood-base/            run directories: the base on each eval set
  round-K/train-run/               run directory: round K's model on the train tasks
  round-K/adapter/                 the adapter trained in round K (with card.json)
  round-K/eval-trained/, ood-trained/  run directories: the trained model on each eval set
  round-K/table.json               round K's record (phases' seconds, data, comparison so far)
  comparison.json, comparison.md   base and every finished round compared (selfrepair.comparison)
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
import time
from collections import Counter
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic_core import to_jsonable_python
from selfrepair.agents.models.adapters import read_card, resolve_base
from selfrepair.graphs.consensus import STRATEGY as LABEL_FREE
from selfrepair.graphs.consensus import label_steps
from selfrepair.graphs.jobs import RepairJob, Rollout
from selfrepair.graphs.run import open_checkpointer
from selfrepair.sandbox.choose import open_sandbox
from selfrepair.sandbox.testing import run_tests
from selfrepair.training.datasets import Sources, dpo_dataset, read_runs, sft_dataset
from selfrepair.training.evaluate import STRATEGY as EVAL_STRATEGY
from selfrepair.training.evaluate import Evaluation, write_comparison
from selfrepair.training.train import Method, default_lora, train_adapter

from selfrepair.codesplit import function_of
from selfrepair.errors import SelfRepairError
from selfrepair.executor.core import Executor
from selfrepair.files import make_directory, write_atomically
from selfrepair.metrics import result_row
from selfrepair.rundir import ResultsWriter, hold_run_dir, is_empty, prepare_run_dir
from selfrepair.settings import Budget, Sampling
from selfrepair.store import STORE_NAME, TrajectoryStore
from selfrepair.types import Task, Trajectory

SETTINGS = "settings.json"
EVAL_SETS = ("eval", "ood")  # the held-out tasks, and the out-of-distribution check

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
    unlabeled: bool = False  # label-free train phase (graphs.consensus); the tests stay hidden
    evaluation: Evaluation = field(default_factory=Evaluation)
    seed: int = 0
    engine: str = "hf"  # what generates: "hf" in process, or "vllm" (one server, each round's adapter a LoRA module)

    def train_phase(self, number: int) -> ImproveSettings:
        """Round `number`'s settings for the train tasks: the repair strategy (the label-free
        graph when unlabeled), sampling seeded with seed + number, and no reviewer ranking
        several passing samples (every passing reply is training data, whichever is chosen)."""
        strategy = LABEL_FREE if self.unlabeled else self.strategy
        sampling = dataclasses.replace(self.sampling, seed=self.seed + number, review_ties=False)
        return dataclasses.replace(self, strategy=strategy, sampling=sampling)

    def eval_phase(self) -> ImproveSettings:
        """The settings every evaluation runs with (training.evaluate)."""
        return dataclasses.replace(
            self,
            strategy=EVAL_STRATEGY,
            budget=self.evaluation.budget(self.budget),
            sampling=self.evaluation.sampling(self.sampling, self.seed),
        )


def repair_run(
    tasks: list[Task],
    model_spec: str,
    executor: Executor,
    settings: ImproveSettings,
    run_dir: Path,
    phase: str,
    report: Report,
) -> dict[str, Any]:
    """Repair every task with one model into a run directory (resumed when it holds this
    phase already), wherever `executor` runs them; returns its summary."""
    config = {
        "command": "improve",
        "phase": phase,
        "model": model_spec,
        "strategy": settings.strategy,
        "budget": dataclasses.asdict(settings.budget),
        "sampling": json_safe(dataclasses.asdict(settings.sampling)),
        "tasks": [t.task_id for t in tasks],
    }
    executor.load(model_spec)
    store = prepare_run_dir(run_dir, config)
    checkpointer = open_checkpointer(store)
    job = RepairJob(
        Rollout(settings.strategy, model_spec, settings.budget, settings.sampling),
        store,
        checkpointer,
    )
    _, summary = run_job(job, tasks, executor, store, run_dir, config, phase, report)
    return summary | {"model": model_spec}


def run_job(
    job: RepairJob,
    tasks: list[Task],
    executor: Executor,
    store: TrajectoryStore,
    run_dir: Path,
    config: dict[str, Any],
    phase: str,
    report: Report,
) -> tuple[list[Trajectory], dict[str, Any]]:
    """Run `job` over `tasks` on `executor` into `run_dir`, writing each task's result as it
    finishes (rundir.ResultsWriter) and reporting progress; closes `store` at the end.
    Returns the trajectories, in the order they finished, and the summary."""
    trajectories: list[Trajectory] = []

    def progress() -> None:
        report(
            {
                "event": "repair",
                "phase": phase,
                "done": len(trajectories),
                "total": len(tasks),
                "solved": sum(t.solved for t in trajectories),
                "tokens": sum(t.tokens for t in trajectories),
            }
        )

    try:
        progress()
        # closing: a phase cut short lets its model go now, not when the generator is collected
        with (
            ResultsWriter(run_dir, config | {"executor": executor.describe()}) as results,
            closing(executor.run(job, tasks, lambda trajectory: None)) as finished,
        ):
            for trajectory in finished:
                trajectories.append(trajectory)
                results.add(result_row(trajectory))
                progress()
    finally:
        store.close()
    return trajectories, results.summary


def json_safe(value: Any) -> Any:
    """`value` as it reads back from JSON (tuples become lists), so a recorded configuration
    compares equal to the one it was made from. Models inside (the sampling's prompts and
    feedback format) go as their fields."""
    return json.loads(json.dumps(value, default=to_jsonable_python))


def open_out(
    out: Path, settings: ImproveSettings, train_tasks: list[Task], eval_sets: dict[str, list[Task]]
) -> None:
    """Make OUT for this run, or check that it holds this run already (to resume it)."""
    recorded = {
        "settings": json_safe(
            {k: v for k, v in dataclasses.asdict(settings).items() if k != "rounds"}
        ),
        "train_tasks": [t.task_id for t in train_tasks],
        **{f"{name}_tasks": [t.task_id for t in tasks] for name, tasks in eval_sets.items()},
    }
    if out.exists() and not out.is_dir():
        raise SelfRepairError(f"--out {out} is a file, not a directory")
    if not is_empty(out) and not (out / SETTINGS).is_file():
        raise SelfRepairError(
            f"--out {out} is not empty and holds no improve run: choose another --out"
        )
    make_directory(out)
    hold_run_dir(out)  # one process at a time, as for a run directory; held before it is read
    if (out / SETTINGS).is_file():
        before = json.loads((out / SETTINGS).read_text(encoding="utf-8"))
        if before != recorded and not holds_a_result(out):
            # That run never got as far as a result (its base did not load, it was stopped
            # at once): the corrected command takes its place rather than being refused.
            write_atomically(out / SETTINGS, json.dumps(recorded, indent=2) + "\n")
            return
        if before != recorded:
            different = sorted(
                k
                for k in recorded["settings"]
                if before["settings"].get(k) != recorded["settings"][k]
            )
            different += [
                k for k in recorded if k.endswith("_tasks") and before.get(k) != recorded[k]
            ]
            raise SelfRepairError(
                f"{out} holds an improve run with other settings ({', '.join(different)}); "
                "choose another --out to start a new run"
            )
        return
    write_atomically(out / SETTINGS, json.dumps(recorded, indent=2) + "\n")


def holds_a_result(out: Path) -> bool:
    """Whether any phase of the improve run in OUT got as far as a trajectory, a checkpoint
    or an adapter."""
    for path in out.rglob(STORE_NAME):
        with TrajectoryStore(path, read_only=True) as store:
            if not store.holds_nothing():
                return True
    return any(out.rglob("adapter_config.json"))


def improve(
    train_tasks: list[Task],
    eval_tasks: list[Task],
    settings: ImproveSettings,
    executor: Executor,
    out: Path,
    report: Report = lambda event: None,
    *,
    ood_tasks: list[Task] | None = None,
) -> list[dict[str, Any]]:
    """Run `settings.rounds` rounds into `out` (resuming what is there), the repair phases
    wherever `executor` runs tasks; returns each round's record. `ood_tasks`, where given, are a second eval set (never trained on either). A round
    whose train phase gave nothing to learn from ends the loop there: its record says so under
    "stopped"."""
    if not train_tasks or not eval_tasks:
        raise SelfRepairError("improve needs train tasks and eval tasks (one of the sets is empty)")
    eval_sets = {"eval": eval_tasks, **({"ood": ood_tasks} if ood_tasks else {})}
    trained = {t.task_id for t in train_tasks}
    for name, tasks in eval_sets.items():
        shared = trained & {t.task_id for t in tasks}
        if shared:
            raise SelfRepairError(
                f"train and {name} tasks overlap ({', '.join(sorted(shared)[:5])}): evaluation would be on trained tasks"
            )
    base_path = resolve_base(settings.base)
    open_out(out, settings, train_tasks, eval_sets)

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
                number,
                folder,
                model_spec,
                base_path,
                train_tasks,
                eval_sets,
                settings,
                executor,
                out,
                train_runs,
                report,
            )
        if "stopped" not in record:  # every round before it finished too
            record["comparison"] = write_comparison(
                out,
                evaluations(out, eval_sets, number),
                settings.seed,
                [without_comparison(r) for r in rounds + [record]],
                {
                    name: {t.task_id: function_of(t) for t in tasks}
                    for name, tasks in eval_sets.items()
                },
            )
        rounds.append(record)
        write_atomically(out / "improve.json", json.dumps(rounds, indent=2) + "\n")
        report({"event": "round", "record": record})
        if "stopped" in record:
            break
        model_spec = trained_spec(settings, base_path, folder)
    return rounds


def evaluations(
    out: Path, eval_sets: dict[str, list[Task]], rounds: int
) -> dict[str, list[tuple[str, Path]]]:
    """Each eval set's run directories: the base's, then each round's."""
    return {
        name: [("base", out / f"{name}-base")]
        + [(f"round {k}", out / f"round-{k}" / f"{name}-trained") for k in range(1, rounds + 1)]
        for name in eval_sets
    }


def without_comparison(record: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in record.items() if key != "comparison"}


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
    eval_sets: dict[str, list[Task]],
    settings: ImproveSettings,
    executor: Executor,
    out: Path,
    train_runs: list[Path],
    report: Report,
) -> dict[str, Any]:
    """One round: the train phase, training, evaluation, comparison. Each phase picks up what
    a killed run left. Seconds are the work's own (the tasks' wall seconds, the training's),
    so they stay true across a resume."""
    record: dict[str, Any] = {"round": number, "model": model_spec, "seconds": {}}
    what = "label train tasks (no tests)" if settings.unlabeled else "repair train tasks"
    train_summary = repair_run(
        train_tasks,
        model_spec,
        executor,
        settings.train_phase(number),
        folder / "train-run",
        f"round {number}: {what}",
        report,
    )
    record["seconds"]["train_phase"] = train_summary["wall_seconds"]
    sources = read_runs(train_runs, keep_suspicious=settings.keep_suspicious)
    this_round = [
        t for t in sources.trajectories if t.trajectory_id in round_ids(folder / "train-run")
    ]
    if settings.unlabeled:
        labelled = [t for t in this_round if label_steps(t)]
        record["pseudo_labelled"] = len(labelled)
        found = len(labelled)
    else:
        record["train_solved"] = train_summary["solved"]
        record["train_repair_rate"] = train_summary["repair_rate"]
        found = train_summary["solved"]
    if found == 0:
        what = "the vote labelled none" if settings.unlabeled else "the repair loop solved none"
        record["stopped"] = (
            f"round {number}: {what} of the {len(train_tasks)} train tasks; nothing to learn from, stopping"
        )
        return record

    card, examples = learn(number, folder, base_path, sources, settings, report)
    record["seconds"]["train"] = card["seconds"]
    record["training"] = {
        "examples": examples,
        "steps": card["steps"],
        "train_loss": card["train_loss"],
    }
    if settings.unlabeled:
        # After training, so nothing here can reach it: how often the vote was right by the tests.
        started = time.perf_counter()
        record["pseudo_label_audit"] = audit_labels(labelled, executor.describe()["sandbox"])
        record["seconds"]["label_audit"] = round(time.perf_counter() - started, 1)

    eval_settings = settings.eval_phase()
    for name, tasks in eval_sets.items():
        base_dir = out / f"{name}-base"
        base_eval = repair_run(
            tasks,
            base_spec(settings, base_path),
            executor,
            eval_settings,
            base_dir,
            f"{name}: base",
            report,
        )
        if number == 1:  # the base is the same in every round: its cost is counted once
            record["seconds"][f"{name}_base"] = base_eval["wall_seconds"]
        trained = repair_run(
            tasks,
            trained_spec(settings, base_path, folder),
            executor,
            eval_settings,
            folder / f"{name}-trained",
            f"{name}: round {number}",
            report,
        )
        record["seconds"][f"{name}_trained"] = trained["wall_seconds"]
    write_atomically(folder / "table.json", json.dumps(record, indent=2) + "\n")
    return record


def round_ids(run_dir: Path) -> set[str]:
    with TrajectoryStore(run_dir, create=False) as store:
        return {t.trajectory_id for t in store.trajectories()}


def learn(
    number: int,
    folder: Path,
    base_path: str,
    sources: Sources,
    settings: ImproveSettings,
    report: Report,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Round `number`'s adapter, trained from the base on every round's data so far (or the one
    a killed run finished); its card and what its examples were."""
    labels = "consensus" if settings.unlabeled else "tests"
    build = sft_dataset if settings.method == "sft" else dpo_dataset
    data = build(sources, eval_fraction=0.0, labels=labels)  # the eval sets are the held-out data
    train = data["train"]
    examples = {
        "count": len(train),
        "tasks": len(set(train["task_id"])),
        "labels": labels,
        # where the examples come from: first replies ("sample"/"solve") or refinements (CYCLE)
        "by_step_kind": dict(sorted(Counter(train["kind"]).items())),
    }
    adapter = folder / "adapter"
    card = read_card(adapter)  # an adapter is renamed into place whole: with its card, it is done
    if card is None:
        for leftover in folder.glob(f".{adapter.name}.partial-*"):  # what a killed training left
            shutil.rmtree(leftover)
        report(
            {
                "event": "train",
                "phase": f"round {number}: train ({settings.method})",
                "examples": len(train),
            }
        )
        provenance = {
            "improve_round": number,
            "initialised_from": "base",
            "data": f"train phases of rounds 1..{number} ({labels} labels)",
            "why": "ReST-EM / STaR: each round fine-tunes the base on all data so far, to limit drift; "
            "the latest adapter only generates the next round's data",
        }
        card = train_adapter(
            settings.method,
            data,
            base_path,
            adapter,
            settings=settings.train_settings,
            lora=default_lora(settings.lora_r),
            run_dirs=sources.run_dirs,
            suspicious_left_out=sources.suspicious_left_out,
            provenance=provenance,
        )
    return card, examples


def audit_labels(labelled: list[Trajectory], sandbox_kind: str) -> dict[str, Any]:
    """Run the hidden tests on one chosen reply per pseudo-labelled task: the share of labels
    that were right. Reported only; it never feeds training. It runs here, on the driver, in a
    sandbox of the kind the executor's nodes use (a few test runs: not worth a cluster job)."""
    correct = 0
    with closing(open_sandbox(sandbox_kind)) as sandbox:
        for trajectory in labelled:
            chosen = label_steps(trajectory)[0]
            correct += run_tests(sandbox, trajectory.task, chosen.candidate).passed
    return {
        "labelled": len(labelled),
        "correct": correct,
        "precision": correct / len(labelled) if labelled else None,
    }
