"""`tune`: the repair strategy improves itself (STOP), measured on tasks the tuning never saw.

Each trial is one strategy (selfrepair.strategy) run on the dev tasks; its utility is the
repair rate there, or that rate per 1,000 tokens or per minute. Trial 0 is the default
strategy. Then, in turn:
  - an Optuna trial (TPE sampler): the numeric and categorical fields (graph, temperature,
    samples, tree parameters, reply length, candidate budget, feedback format) sampled by
    Optuna, the rest (prompt templates, token budget) from the best trial so far;
  - a proposal trial: the improver model reads the best strategy so far, its utility and
    tasks it failed (on the dev tasks; where train tasks are given, on those instead, so that
    the dev tasks only select), and proposes a new version (graphs.improving); a proposal is screened,
    and a refused one is counted by kind and asked again, up to ATTEMPTS times, before the
    trial falls back to Optuna. An accepted proposal is given to Optuna as the trial's
    parameters (enqueued), so the sampler learns from it too. With `recursive`, a proposal may
    also rewrite the improver's own prompt, which then rides with its strategy: the improver
    asked next is the best trial's.
Every dev run draws with the same seed, so trials differ by their strategy, not their luck.

At the end the best trial's strategy (the earliest of equals: the default wins ties) and the
default are both run on the eval tasks, with `eval_seeds` seeds each, and compared task by
task (per task, the repair rate over its seeds; a paired bootstrap over tasks, so a task's
seeds stay together, and the exact sign test).

OUT/
  settings.json               what this run is (all but the number of trials)
  study.sqlite                Optuna's storage (RDB): every trial's parameters and utility
  proposals.jsonl             every improver reply: the trial it was for, accepted or why not
  trials/NNNN/                run directory of trial N on the dev tasks; strategy.json
  train/NNNN/                 trial N's strategy on the train tasks (the improver's evidence)
  eval/{default,tuned}-sS/    run directories on the eval tasks, seed S
  strategy.json               the tuned strategy (`--strategy-file` takes it)
  report.json, report.md      the search and the evaluation

A killed run resumes when started again with the same settings: finished trials are kept, a
trial cut off mid-way is finished from its run directory (its strategy is in the study), and
logged proposals are not asked again. More trials than before extend a finished run. Nothing
here prints: progress goes to `report`.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import optuna
from selfrepair.agents.models.backends import load_model
from selfrepair.agents.models.protocol import Model
from selfrepair.graphs.improving import propose_strategy
from selfrepair.graphs.jobs import RepairJob, Rollout
from selfrepair.graphs.run import open_checkpointer
from selfrepair.training.improve import run_job

from selfrepair.errors import SelfRepairError
from selfrepair.executor.core import Executor
from selfrepair.files import make_directory, write_atomically
from selfrepair.report import TUNE_REPORT, TUNE_STUDY
from selfrepair.rundir import hold_run_dir, is_empty, prepare_run_dir, read_results
from selfrepair.settings import Budget
from selfrepair.stats import bootstrap_mean, paired_bootstrap, sign_test
from selfrepair.store import TrajectoryStore
from selfrepair.strategy import GRAPHS, Strategy
from selfrepair.types import Task, Trajectory

Utility = Literal["rate", "rate-per-1k-tokens", "rate-per-minute"]
UTILITIES: tuple[str, ...] = ("rate", "rate-per-1k-tokens", "rate-per-minute")
ATTEMPTS = 3  # improver replies per proposal trial before it falls back to Optuna
SETTINGS = "settings.json"
STUDY = TUNE_STUDY
PROPOSALS = "proposals.jsonl"
REPORT_MD = "report.md"
Report = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class TuneSettings:
    model: str
    improver: str
    trials: int
    budget: Budget
    utility: Utility = "rate"
    seed: int = 0
    recursive: bool = False
    eval_seeds: int = 2


def utility_of(rows: Sequence[dict[str, Any]], utility: Utility) -> float:
    """The utility of a run's result rows: repair rate, or repairs per 1,000 tokens, or per
    minute of the tasks' wall time."""
    solved = sum(row["solved"] for row in rows)
    if utility == "rate":
        return solved / len(rows) if rows else 0.0
    if utility == "rate-per-1k-tokens":
        tokens = sum(row["tokens"] for row in rows)
        return 1000 * solved / tokens if tokens else 0.0
    seconds = sum(row["wall_seconds"] for row in rows)
    return 60 * solved / seconds if seconds else 0.0


def search_space(budget: Budget) -> dict[str, optuna.distributions.BaseDistribution]:
    """What Optuna searches: the strategy's numeric and categorical fields, over ranges that
    hold the default and keep a trial's cost sane on a CPU (the schema allows more: a
    proposal outside these ranges is enqueued as it is, and Optuna records it)."""
    d = optuna.distributions
    return {
        "graph": d.CategoricalDistribution(GRAPHS),
        "temperature": d.FloatDistribution(0.0, 1.5),
        "reply_tokens": d.IntDistribution(64, 512, log=True),
        "review_tokens": d.IntDistribution(32, 256, log=True),
        "samples": d.IntDistribution(1, 16, log=True),
        "children": d.IntDistribution(1, 4),
        "exploration": d.FloatDistribution(0.1, 4.0),
        "test_weight": d.FloatDistribution(0.0, 1.0),
        "review_ties": d.CategoricalDistribution((True, False)),
        "max_candidates": d.IntDistribution(1, budget.max_candidates),
        "traceback_lines": d.IntDistribution(1, 20),
        "max_failures": d.IntDistribution(1, 8),
        "max_chars": d.IntDistribution(300, 3000, log=True),
    }


FEEDBACK_FIELDS = ("traceback_lines", "max_failures", "max_chars")


def params_of(strategy: Strategy, budget: Budget) -> dict[str, Any]:
    """A strategy as Optuna's parameters (its candidate budget: the run's when it has none)."""
    data = strategy.model_dump()
    params = {name: data[name] for name in search_space(budget) if name not in FEEDBACK_FIELDS}
    params["max_candidates"] = strategy.budget(budget).max_candidates
    params |= {name: data["feedback"][name] for name in FEEDBACK_FIELDS}
    return params


def strategy_of(params: dict[str, Any], rest: Strategy, budget: Budget) -> Strategy:
    """`rest` (its prompts and token budget) with Optuna's parameters."""
    fields = {k: v for k, v in params.items() if k not in FEEDBACK_FIELDS}
    if fields["max_candidates"] == budget.max_candidates:
        fields["max_candidates"] = None  # the run's: what the default says
    feedback = rest.feedback.model_copy(update={k: params[k] for k in FEEDBACK_FIELDS})
    return rest.model_validate(rest.model_dump() | fields | {"feedback": feedback.model_dump()})


def open_out(out: Path, settings: TuneSettings, tasks: dict[str, list[Task]]) -> None:
    """Make OUT for this run, or check that it holds this run (to resume it)."""
    recorded = json.loads(
        json.dumps(
            {
                "settings": {
                    k: v for k, v in dataclasses.asdict(settings).items() if k != "trials"
                },
                **{f"{name}_tasks": [t.task_id for t in split] for name, split in tasks.items()},
            }
        )
    )
    if out.exists() and not out.is_dir():
        raise SelfRepairError(f"--out {out} is a file, not a directory")
    if not is_empty(out) and not (out / SETTINGS).is_file():
        raise SelfRepairError(
            f"--out {out} is not empty and holds no tune run: choose another --out"
        )
    make_directory(out)
    hold_run_dir(out)
    if (out / SETTINGS).is_file():
        before = json.loads((out / SETTINGS).read_text(encoding="utf-8"))
        if before != recorded and (out / STUDY).exists():
            different = sorted(
                k
                for k in recorded["settings"]
                if before["settings"].get(k) != recorded["settings"][k]
            ) + [k for k in recorded if k.endswith("_tasks") and before.get(k) != recorded[k]]
            raise SelfRepairError(
                f"{out} holds a tune run with other settings ({', '.join(different)}); "
                "choose another --out to start a new run"
            )
    write_atomically(out / SETTINGS, json.dumps(recorded, indent=2) + "\n")


def open_study(out: Path, seed: int) -> optuna.Study:
    """The run's study in OUT/study.sqlite, made or reloaded. The sampler's seed moves on with
    the trials already there, so a resumed run does not draw the first run's points again."""
    storage = f"sqlite:///{(out / STUDY).resolve()}"
    study = (
        optuna.load_study(study_name="tune", storage=storage) if (out / STUDY).exists() else None
    )
    done = len(study.trials) if study is not None else 0
    return optuna.create_study(
        study_name="tune",
        storage=storage,
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=seed + done),
        load_if_exists=True,
    )


def run_tasks(
    tasks: list[Task],
    strategy: Strategy,
    settings: TuneSettings,
    executor: Executor,
    run_dir: Path,
    seed: int,
    phase: str,
    report: Report,
) -> list[Trajectory]:
    """Repair `tasks` with `strategy` into a run directory (resumed when it holds this run
    already); its trajectories, in task order."""
    budget = strategy.budget(settings.budget)
    config = {
        "command": "tune",
        "phase": phase,
        "model": settings.model,
        "strategy": strategy.model_dump(),
        "budget": dataclasses.asdict(budget),
        "seed": seed,
        "tasks": [t.task_id for t in tasks],
    }
    executor.load(settings.model)
    store = prepare_run_dir(run_dir, config)
    write_atomically(run_dir / "strategy.json", strategy.model_dump_json(indent=1) + "\n")
    job = RepairJob(
        Rollout(strategy.graph, settings.model, budget, strategy.sampling(seed)),
        store,
        open_checkpointer(store),
    )
    trajectories, _ = run_job(job, tasks, executor, store, run_dir, config, phase, report)
    return trajectories


def read_proposals(out: Path) -> list[dict[str, Any]]:
    path = out / PROPOSALS
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def log_proposal(out: Path, record: dict[str, Any]) -> None:
    """Append one proposal's record (the whole file rewritten beside it, then renamed)."""
    lines = [json.dumps(r) for r in [*read_proposals(out), record]]
    write_atomically(out / PROPOSALS, "\n".join(lines) + "\n")


def finished(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))


def best_trial(study: optuna.Study) -> optuna.trial.FrozenTrial:
    """The highest utility; of equals, the earliest (so the default wins a tie)."""
    return max(finished(study), key=lambda t: (t.value, -t.number))


def trial_strategy(trial: optuna.trial.FrozenTrial) -> Strategy:
    return Strategy.model_validate_json(trial.user_attrs["strategy"])


def failures_of(
    out: Path,
    trial: optuna.trial.FrozenTrial,
    train: list[Task],
    settings: TuneSettings,
    executor: Executor,
    report: Report,
) -> list[Trajectory]:
    """The tasks trial `trial`'s strategy did not repair, for the improver to read: on the
    dev tasks, as its run directory holds them; with train tasks, on those instead (run once
    per best trial, into OUT/train/NNNN/), so the dev tasks only ever select."""
    if train:
        trajectories = run_tasks(
            train,
            trial_strategy(trial),
            settings,
            executor,
            out / "train" / f"{trial.number:04d}",
            settings.seed,
            f"train, trial {trial.number}'s strategy",
            report,
        )
        return [t for t in trajectories if not t.solved]
    with TrajectoryStore(trial_dir(out, trial.number), read_only=True) as store:
        return [t for t in store.trajectories() if not t.solved]


def trial_dir(out: Path, number: int) -> Path:
    return out / "trials" / f"{number:04d}"


def propose(
    out: Path,
    study: optuna.Study,
    train: list[Task],
    settings: TuneSettings,
    executor: Executor,
    improver: Callable[[], Model],
    number: int,
    report: Report,
) -> Strategy | None:
    """The improver's accepted proposal for trial `number`, or None after ATTEMPTS refusals.
    Proposals logged for this trial by a run that was killed count and are not asked again."""
    logged = [p for p in read_proposals(out) if p["trial"] == number]
    accepted = [p for p in logged if p["accepted"]]
    if accepted:
        return Strategy.model_validate(accepted[0]["strategy"])
    best = best_trial(study)
    current = trial_strategy(best)
    failures = failures_of(out, best, train, settings, executor, report)
    for attempt in range(len(logged), ATTEMPTS):
        proposal = propose_strategy(
            improver(),
            current,
            best.value,
            failures,
            settings.budget,
            recursive=settings.recursive,
            seed=settings.seed + 1000 * number + attempt,
        )
        strategy = proposal.screened.strategy
        record = {
            "trial": number,
            "attempt": attempt,
            "from_trial": best.number,
            "accepted": strategy is not None,
            "unchanged": strategy == current,
            "refused": list(proposal.screened.kinds),
            "reasons": list(proposal.screened.reasons),
            "tokens": proposal.tokens,
            "seconds": round(proposal.seconds, 2),
            "reply": proposal.reply,
            "strategy": strategy.model_dump() if strategy is not None else None,
        }
        log_proposal(out, record)
        report({"event": "proposal", "record": record})
        if strategy is not None:
            return strategy
    return None


def run_trials(
    out: Path,
    study: optuna.Study,
    train: list[Task],
    dev: list[Task],
    settings: TuneSettings,
    executor: Executor,
    improver: Callable[[], Model],
    report: Report,
) -> None:
    """Run trials until the study holds `settings.trials` finished ones."""
    space = search_space(settings.budget)

    def run(trial_number: int, strategy: Strategy, kind: str) -> float:
        trajectories = run_tasks(
            dev,
            strategy,
            settings,
            executor,
            trial_dir(out, trial_number),
            settings.seed,
            f"trial {trial_number} ({kind})",
            report,
        )
        rows = read_results(trial_dir(out, trial_number))
        value = utility_of(rows, settings.utility)
        report(
            {
                "event": "trial",
                "number": trial_number,
                "kind": kind,
                "utility": value,
                "solved": sum(t.solved for t in trajectories),
                "tasks": len(trajectories),
                "best": max([value, *(t.value for t in finished(study))]),
            }
        )
        return value

    # A trial a killed run left running is finished with the strategy it recorded; one it
    # enqueued and never started is closed as failed (its number stays unused).
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        if "strategy" in trial.user_attrs:
            value = run(trial.number, trial_strategy(trial), trial.user_attrs["kind"])
            study.tell(trial.number, value)
        else:
            study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
    for _ in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,)):
        study.tell(study.ask(space).number, state=optuna.trial.TrialState.FAIL)

    while len(finished(study)) < settings.trials:
        number = len(study.trials)
        strategy: Strategy | None = None
        if not finished(study):
            kind, strategy = "default", Strategy.default()
        elif len(finished(study)) % 2 == 0:
            kind = "proposal"
            strategy = propose(out, study, train, settings, executor, improver, number, report)
        if strategy is not None:
            study.enqueue_trial(params_of(strategy, settings.budget))
        with warnings.catch_warnings():
            # An enqueued proposal may lie outside the searched ranges (within the schema's):
            # Optuna warns, and records it as it is, which is what is meant.
            warnings.filterwarnings("ignore", message="Fixed parameter")
            trial = study.ask(space)  # an enqueued trial answers with the values it was given
        if strategy is None:
            kind = "optuna"
            strategy = strategy_of(trial.params, trial_strategy(best_trial(study)), settings.budget)
        trial.set_user_attr("kind", kind)
        trial.set_user_attr("strategy", strategy.model_dump_json())
        study.tell(trial, run(trial.number, strategy, kind))


def evaluate(
    out: Path,
    eval_tasks: list[Task],
    tuned: Strategy,
    settings: TuneSettings,
    executor: Executor,
    report: Report,
) -> dict[str, Any]:
    """The tuned strategy against the default on the eval tasks, `eval_seeds` seeds each,
    paired by task."""
    contenders = {"default": Strategy.default()}
    if tuned != Strategy.default():
        contenders["tuned"] = tuned
    seeds = [settings.seed + offset for offset in range(settings.eval_seeds)]
    rows: dict[str, dict[int, list[dict[str, Any]]]] = {}
    for name, strategy in contenders.items():
        rows[name] = {}
        for seed in seeds:
            run_dir = out / "eval" / f"{name}-s{seed}"
            run_tasks(
                eval_tasks,
                strategy,
                settings,
                executor,
                run_dir,
                seed,
                f"eval {name} s{seed}",
                report,
            )
            rows[name][seed] = read_results(run_dir)
    return compare_strategies(rows, settings.utility)


def compare_strategies(
    rows: dict[str, dict[int, list[dict[str, Any]]]], utility: Utility
) -> dict[str, Any]:
    """Each strategy's repair rate (per task, the share of its seeds that repaired it; an
    interval over tasks), utility, tokens and seconds; and, for "tuned", the paired difference
    from "default" per task, with a bootstrap interval over tasks (a task's seeds stay
    together) and the exact sign test on the tasks whose rate differs."""
    per_task: dict[str, dict[str, float]] = {}
    summary: dict[str, Any] = {"strategies": {}}
    for name, by_seed in rows.items():
        solved: dict[str, list[float]] = {}
        for seed_rows in by_seed.values():
            for row in seed_rows:
                solved.setdefault(row["task_id"], []).append(float(row["solved"]))
        per_task[name] = {task: sum(v) / len(v) for task, v in solved.items()}
        every = [row for seed_rows in by_seed.values() for row in seed_rows]
        summary["strategies"][name] = {
            "repair_rate": bootstrap_mean(list(per_task[name].values())).to_json(),
            "utility": utility_of(every, utility),
            "tokens": sum(row["tokens"] for row in every),
            "wall_seconds": round(sum(row["wall_seconds"] for row in every), 1),
            "seeds": sorted(by_seed),
        }
    tasks = sorted(per_task["default"])
    summary["tasks"] = len(tasks)
    if "tuned" in per_task:
        if sorted(per_task["tuned"]) != tasks:
            raise SelfRepairError("the tuned and default strategies ran on different eval tasks")
        before = [per_task["default"][t] for t in tasks]
        after = [per_task["tuned"][t] for t in tasks]
        summary["difference"] = (
            paired_bootstrap(before, after).to_json() | sign_test(before, after).to_json()
        )
    return summary


def proposal_counts(out: Path) -> dict[str, Any]:
    proposals = read_proposals(out)
    refused = [p for p in proposals if not p["accepted"]]
    return {
        "made": len(proposals),
        "accepted": len(proposals) - len(refused),
        "refused": len(refused),
        "refused_by_kind": dict(Counter(kind for p in refused for kind in set(p["refused"]))),
    }


def tune(
    train: list[Task],
    dev: list[Task],
    eval_tasks: list[Task],
    settings: TuneSettings,
    executor: Executor,
    out: Path,
    report: Report = lambda event: None,
) -> dict[str, Any]:
    """Run the search into OUT (resuming what is there), evaluate the best strategy against
    the default on the eval tasks, and write the report; returns it."""
    if not dev or not eval_tasks:
        raise SelfRepairError("tune needs dev tasks and eval tasks (one of the sets is empty)")
    splits = {"train": train, "dev": dev, "eval": eval_tasks}
    for first, second in (("train", "dev"), ("train", "eval"), ("dev", "eval")):
        shared = {t.task_id for t in splits[first]} & {t.task_id for t in splits[second]}
        if shared:
            raise SelfRepairError(
                f"{first} and {second} tasks overlap ({', '.join(sorted(shared)[:5])}): "
                "the evaluation would be on tasks the tuning saw"
            )
    open_out(out, settings, splits)
    study = open_study(out, settings.seed)
    loaded: dict[str, Model] = {}

    def improver() -> Model:
        """The improver, loaded on first use: a run resumed past its proposals never loads it."""
        if "model" not in loaded:
            loaded["model"] = load_model(settings.improver)
        return loaded["model"]

    run_trials(out, study, train, dev, settings, executor, improver, report)
    best = best_trial(study)
    tuned = trial_strategy(best)
    write_atomically(out / "strategy.json", tuned.model_dump_json(indent=1) + "\n")
    evaluation = evaluate(out, eval_tasks, tuned, settings, executor, report)
    result = {
        "settings": json.loads(json.dumps(dataclasses.asdict(settings))),
        "tasks": {name: len(split) for name, split in splits.items()},
        "trials": [
            {
                "number": t.number,
                "kind": t.user_attrs["kind"],
                "utility": t.value,
                "best_so_far": max(u.value for u in finished(study) if u.number <= t.number),
                "params": t.params,
            }
            for t in finished(study)
        ],
        "best_trial": best.number,
        "tuned_is_default": tuned == Strategy.default(),
        "proposals": proposal_counts(out),
        "evaluation": evaluation,
    }
    write_atomically(out / TUNE_REPORT, json.dumps(result, indent=2) + "\n")
    write_atomically(out / REPORT_MD, report_markdown(result))
    return result


def report_markdown(result: dict[str, Any]) -> str:
    settings, evaluation, proposals = result["settings"], result["evaluation"], result["proposals"]
    lines = [
        f"# tune: {settings['model']}, utility {settings['utility']}",
        "",
        f"Tasks: {result['tasks']['dev']} dev, {result['tasks']['eval']} eval; "
        f"{len(result['trials'])} trials; best trial {result['best_trial']}"
        + (" (the default stays best)" if result["tuned_is_default"] else ""),
        "",
        "| trial | kind | utility (dev) | best so far |",
        "|---|---|---|---|",
        *(
            f"| {t['number']} | {t['kind']} | {t['utility']:.4g} | {t['best_so_far']:.4g} |"
            for t in result["trials"]
        ),
        "",
        f"Improver proposals: {proposals['made']} made, {proposals['accepted']} accepted, "
        f"{proposals['refused']} refused"
        + (
            " ("
            + ", ".join(f"{k} {v}" for k, v in sorted(proposals["refused_by_kind"].items()))
            + ")"
            if proposals["refused_by_kind"]
            else ""
        ),
        "",
        f"## Eval: {evaluation['tasks']} tasks never seen by the tuning",
        "",
        "| strategy | repair rate [95% CI] | utility | tokens | seconds |",
        "|---|---|---|---|---|",
    ]
    for name, entry in evaluation["strategies"].items():
        rate = entry["repair_rate"]
        lines.append(
            f"| {name} | {rate['value']:.3f} [{rate['low']:.3f}, {rate['high']:.3f}] | "
            f"{entry['utility']:.4g} | {entry['tokens']:,} | {entry['wall_seconds']:.0f} |"
        )
    lines.append("")
    if "difference" in evaluation:
        lines.append(f"Tuned − default: {describe(evaluation['difference'])}.")
    else:
        lines.append("The best strategy is the default: there is nothing to compare.")
    lines.append("")
    return "\n".join(lines)


def describe(difference: dict[str, Any]) -> str:
    return (
        f"{difference['value']:+.3f} [{difference['low']:+.3f}, {difference['high']:+.3f}] "
        f"(paired bootstrap over tasks), sign test p={difference['p_value']:.3g} "
        f"({difference['gained']} tasks gained, {difference['lost']} lost)"
    )
