"""The closed loop with its controls: does a model that trains on its own repairs learn to
repair, beyond what it learns about the form of a reply? `improve` rounds, a placebo adapter
at the same budget, statistics clustered by function, over several seeds of the whole
procedure. Prints one JSON line (and writes it to OUT/closed_loop.json).

Per seed s (the split, every sampling seed and the trainer's seed derive from it):
  1. the tasks are split by code (selfrepair.codesplit): whole packages (one package: whole
     modules) on one side, eval tasks whose function is a train function in disguise
     (normalised-code fingerprint) removed and counted; then at most --train-limit and
     --eval-limit tasks are drawn, by a hash of s and the task id.
  2. each arm runs `improve` (selfrepair.training.improve) into OUT/seed-s/ARM: labelled
     (SFT on verified repairs, best-of-n), refine (SFT with refinement trajectories, CYCLE),
     dpo (DPO on sibling pairs), unlabeled (LMSI: self-consistency labels, tests hidden).
     The base is evaluated once per seed and shared (the same settings and seeds).
  3. the placebo (training.placebo): an adapter with the hyperparameters, seed and number of
     examples of the labelled arm's last round, on replies of the same form and length with
     no repair signal (the correct function restated for an input that is already correct),
     evaluated like the rounds.
  4. per eval set, every model against the base, round 2 against round 1, the last round
     against the placebo, and each other arm's last round against the labelled one: paired
     differences with intervals and sign tests over tasks, and clustered by function (cluster
     bootstrap, sign test over functions); each model's failure kinds (training.failures) and
     cut-off rate; each phase's seconds and rollouts per minute.
Across seeds: each difference's value per seed, mean, min and max.

    OMP_NUM_THREADS=1 python benchmarks/closed_loop.py --small      # SmolLM2, operator bugs
    python benchmarks/closed_loop.py --full                          # Qwen2.5-Coder-0.5B, synth

Writes OUT/closed_loop.json (what it prints) and OUT/closed_loop.md (the tables).
--small and --full are presets (the PRESETS below); any flag given overrides its value. Seeds
run one after the other, `--seeds 0` runs one; the same command on the same --out resumes
where it stopped (finished rounds, adapters and every run directory are kept), and a seed
already done is read back, not rerun.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from operator_bugs import make_bugs  # noqa: E402
from selfrepair.agents.models.adapters import read_card, resolve_base  # noqa: E402
from selfrepair.sandbox.choose import open_sandbox  # noqa: E402
from selfrepair.training.datasets import read_runs, sft_rows  # noqa: E402
from selfrepair.training.evaluate import Evaluation  # noqa: E402
from selfrepair.training.failures import failure_kinds  # noqa: E402
from selfrepair.training.improve import (  # noqa: E402
    ImproveSettings,
    improve,
    repair_run,
    trained_spec,
)
from selfrepair.training.placebo import placebo_dataset  # noqa: E402
from selfrepair.training.train import default_lora, train_adapter  # noqa: E402

from selfrepair.codesplit import function_of, split_by_code  # noqa: E402
from selfrepair.comparison import compare  # noqa: E402
from selfrepair.errors import SelfRepairError  # noqa: E402
from selfrepair.executor.local import LocalExecutor  # noqa: E402
from selfrepair.loaders import load_tasks  # noqa: E402
from selfrepair.rundir import read_results  # noqa: E402
from selfrepair.settings import Budget, Sampling  # noqa: E402
from selfrepair.types import Task  # noqa: E402

ARMS = {  # arm -> (method, strategy, label-free)
    "labelled": ("sft", "best-of-n", False),
    "refine": ("sft", "refine", False),
    "dpo": ("dpo", "best-of-n", False),
    "unlabeled": ("sft", "best-of-n", True),
}
QUIXBUGS = Path(__file__).resolve().parents[2] / "shared" / "benchmarks" / "quixbugs_python.jsonl"
# Packages `selfrepair synth` turns into the full run's tasks (held out by package).
SYNTH_PACKAGES = ("toolz==1.0.0", "more-itertools==11.2.1", "inflection==0.5.1")
PRESETS: dict[str, dict[str, Any]] = {
    # SmolLM2 on single-operator bugs, split by function: 841 s a seed on 2 loaded cores.
    "small": {
        "out": Path("/work/experiments/closed-loop-small"),
        "base": "smollm2",
        "engine": "vllm",
        "tasks": None,  # generated operator bugs
        "per_function": 2,
        "eval_fraction": 0.4,
        "train_limit": 10,
        "eval_limit": 10,
        "ood": None,
        "ood_limit": None,
        "arms": "labelled",
        "rounds": 2,
        "budget": 4,
        "eval_samples": 4,
        "reply_tokens": 192,
        "epochs": 2.0,
        "seeds": "0,1,2",
    },
    # Qwen2.5-Coder-0.5B-Instruct (de-quantized) on vLLM's CPU server; synth bugs of real
    # packages held out by package, QuixBugs out of distribution. Hours per seed on 2 cores.
    "full": {
        "out": Path("/work/experiments/closed-loop-full"),
        "base": str(Path.home() / ".cache/selfrepair/models/qwen2.5-coder-0.5b-instruct"),
        "engine": "vllm",
        "tasks": "synth",  # made by `selfrepair synth` into OUT/tasks
        "per_function": 2,
        "eval_fraction": 0.35,
        "train_limit": 120,
        "eval_limit": 60,
        "ood": str(QUIXBUGS),
        "ood_limit": 40,
        "arms": "labelled,refine,dpo,unlabeled",
        "rounds": 2,
        "budget": 4,
        "eval_samples": 4,
        "reply_tokens": 512,
        "epochs": 2.0,
        "seeds": "0,1,2",
    },
}


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def progress(event: dict[str, Any]) -> None:
    if event["event"] == "repair" and (
        event["done"] in (0, event["total"]) or event["done"] % 4 == 0
    ):
        say(f"  {event['phase']}: {event['done']}/{event['total']} ({event['solved']} solved)")
    elif event["event"] == "train":
        say(f"  {event['phase']}: {event['examples']} examples")


def draw(tasks: list[Task], limit: int | None, seed: int) -> list[Task]:
    """At most `limit` tasks, by a hash of the seed and the id, fixed before any model runs."""
    ordered = sorted(
        tasks, key=lambda t: hashlib.sha256(f"{seed}:{t.task_id}".encode()).hexdigest()
    )
    return ordered if limit is None else ordered[:limit]


def operator_tasks(out: Path, per_function: int) -> list[Task]:
    """Every generated operator bug (benchmarks/operator_bugs.py), made once into OUT/data;
    each function its own module of one package, `operator_bugs`."""
    path = out / "data" / f"operator-bugs-{per_function}.jsonl"
    if not path.is_file():
        records = [r for bugs in make_bugs(per_function).values() for r in bugs]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.with_suffix(".tmp").write_text("".join(json.dumps(r) + "\n" for r in records))
        path.with_suffix(".tmp").replace(path)
    return [
        task.model_copy(
            update={
                "metadata": task.metadata
                | {"package": "operator_bugs", "function": task.entry_point.split("-bug")[0]}
            }
        )
        for task in load_tasks("quixbugs", path)
    ]


def synth_tasks(out: Path, packages: list[str]) -> list[Task]:
    """The function-level tasks `selfrepair synth` makes of `packages` into OUT/tasks (its
    run resumes where a killed one stopped; a finished one returns at once)."""
    tasks_dir = out / "tasks"
    selfrepair = Path(sys.executable).with_name("selfrepair")
    command = [str(selfrepair), "synth", *packages, "--out", str(tasks_dir), "--jobs", "2"]
    subprocess.run(command, check=True, stdout=sys.stderr)
    return load_tasks("synth", tasks_dir / "functions.jsonl")


def settings_for(args: argparse.Namespace, arm: str, seed: int) -> ImproveSettings:
    method, strategy, unlabeled = ARMS[arm]
    return ImproveSettings(
        base=args.base,
        rounds=args.rounds,
        method=method,
        strategy=strategy,
        budget=Budget(max_candidates=args.budget),
        sampling=Sampling(samples=args.budget, temperature=0.8, max_tokens=args.reply_tokens),
        train_settings={
            "num_train_epochs": args.epochs,
            "learning_rate": 2e-4,
            "max_length": 1024,
            "per_device_train_batch_size": 4,
            "gradient_checkpointing": False,
            "seed": seed,
        },
        unlabeled=unlabeled,
        evaluation=Evaluation(samples=args.eval_samples),
        seed=seed,
        engine=args.engine,
    )


def run_placebo(
    args: argparse.Namespace,
    seed_dir: Path,
    train: list[Task],
    eval_sets: dict[str, list[Task]],
    executor: LocalExecutor,
) -> dict[str, Any]:
    """The placebo adapter, matched to the labelled arm's last round (its examples' count,
    hyperparameters and seed), and its evaluations: OUT/seed-s/placebo."""
    settings = settings_for(args, "labelled", args.seed)
    labelled, folder = seed_dir / "labelled", seed_dir / "placebo"
    train_runs = [labelled / f"round-{k}" / "train-run" for k in range(1, args.rounds + 1)]
    rows = sft_rows(read_runs(train_runs).trajectories)
    data = placebo_dataset(rows, {t.task_id: t for t in train})
    base_path = resolve_base(args.base)
    card = read_card(folder / "adapter")
    if card is None:
        say(f"  placebo: train ({len(data['train'])} examples)")
        card = train_adapter(
            "sft",
            data,
            base_path,
            folder / "adapter",
            settings=settings.train_settings,
            lora=default_lora(settings.lora_r),
            provenance={"placebo_of": str(train_runs[-1].parent), "why": "form without repair"},
        )
    record: dict[str, Any] = {"examples": len(data["train"]), "seconds": {"train": card["seconds"]}}
    for name, tasks in eval_sets.items():
        summary = repair_run(
            tasks,
            trained_spec(settings, base_path, folder),
            executor,
            settings.eval_phase(),
            folder / f"{name}-trained",
            f"{name}: placebo",
            progress,
        )
        record["seconds"][f"{name}_trained"] = summary["wall_seconds"]
    return record


def model_dirs(
    seed_dir: Path, arms: list[str], rounds: int, eval_set: str
) -> list[tuple[str, Path]]:
    """(name, run directory) of every model evaluated on one eval set: base first."""
    models = [("base", seed_dir / arms[0] / f"{eval_set}-base")]
    for arm in arms:
        prefix = "" if arm == "labelled" else f"{arm} "
        models += [
            (f"{prefix}round {k}", seed_dir / arm / f"round-{k}" / f"{eval_set}-trained")
            for k in range(1, rounds + 1)
        ]
    if "labelled" in arms:
        models.append(("placebo", seed_dir / "placebo" / f"{eval_set}-trained"))
    return [(name, path) for name, path in models if (path / "results.jsonl").is_file()]


def pairs_of(names: list[str], rounds: int) -> list[tuple[str, str]]:
    """Every model against the base; round 2 against round 1; the last round against the
    placebo; every other arm's last round against the labelled arm's."""
    last = f"round {rounds}"
    wanted = [(name, "base") for name in names[1:]]
    if "round 2" in names:
        wanted.append(("round 2", "round 1"))
    if "placebo" in names and last in names:
        wanted.append((last, "placebo"))
    wanted += [(n, last) for n in names if n.endswith(f" {last}") and n != last and last in names]
    return wanted


def rollouts(run_dir: Path) -> dict[str, Any]:
    """A phase's seconds and rollouts (sampled replies, each tested) per minute."""
    seconds = sum(row["wall_seconds"] for row in read_results(run_dir))
    replies = failure_kinds(run_dir)["replies"]
    return {
        "seconds": round(seconds, 1),
        "rollouts": replies,
        "rollouts_per_minute": round(60 * replies / seconds, 2) if seconds else None,
    }


def seed_figures(
    args: argparse.Namespace, seed_dir: Path, arms: list[str], eval_sets: dict[str, list[Task]]
) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    for eval_set, tasks in eval_sets.items():
        models = model_dirs(seed_dir, arms, args.rounds, eval_set)
        if not models:  # the first arm stopped before any evaluation (it solved nothing)
            continue
        names = [name for name, _ in models]
        comparison = compare(
            [(name, read_results(path)) for name, path in models],
            seed=args.seed,
            clusters={t.task_id: function_of(t) for t in tasks},
            pairs=pairs_of(names, args.rounds),
        )
        figures[eval_set] = {
            "tasks": comparison["tasks"],
            "functions": comparison["clusters"],
            "samples": comparison["samples"],
            "models": {
                m["name"]: {metric: m[metric] for metric in ("pass@1", "repair_rate")}
                | failure_kinds(path)
                | {"phase": rollouts(path)}
                for m, (_, path) in zip(comparison["models"], models, strict=True)
            },
            "differences": {
                f"{d['name']} - {d['against']}": {
                    metric: d[metric] for metric in ("pass@1", "repair_rate")
                }
                for d in comparison["differences"]
            },
        }
    figures["train_phases"] = {
        f"{arm} round {k}": rollouts(seed_dir / arm / f"round-{k}" / "train-run")
        for arm in arms
        for k in range(1, args.rounds + 1)
        if (seed_dir / arm / f"round-{k}" / "train-run" / "results.jsonl").is_file()
    }
    return figures


def run_seed(
    args: argparse.Namespace, tasks: list[Task], ood: list[Task] | None, arms: list[str]
) -> dict[str, Any]:
    seed_dir = args.out / f"seed-{args.seed}"
    done = seed_dir / "seed.json"
    if done.is_file():
        return json.loads(done.read_text())
    split = split_by_code(tasks, eval_fraction=args.eval_fraction, seed=args.seed)
    train, held_out = (
        draw(split.train, args.train_limit, args.seed),
        draw(split.eval, args.eval_limit, args.seed),
    )
    eval_sets = {"eval": held_out, **({"ood": ood} if ood else {})}
    say(f"seed {args.seed}: {split.report()}; drawn {len(train)} train, {len(held_out)} eval")
    record: dict[str, Any] = {
        "seed": args.seed,
        "split": split.report(),
        "train_tasks": len(train),
        "eval_tasks": len(held_out),
        "arms": {},
    }
    executor = LocalExecutor(open_sandbox(args.sandbox))
    try:
        for number, arm in enumerate(arms):
            settings = settings_for(args, arm, args.seed)
            out = seed_dir / arm
            if number:  # the base's evaluations are the first arm's (the same computation)
                improve(
                    train,
                    held_out,
                    dataclasses.replace(settings, rounds=0),
                    executor,
                    out,
                    ood_tasks=ood,
                )
                for base_dir in (seed_dir / arms[0]).glob("*-base"):
                    if not (out / base_dir.name).exists():
                        subprocess.run(
                            ["cp", "-r", str(base_dir), str(out / base_dir.name)], check=True
                        )
            say(f"seed {args.seed}: arm {arm}")
            try:
                rounds = improve(train, held_out, settings, executor, out, progress, ood_tasks=ood)
            except SelfRepairError as error:  # e.g. DPO with no prompt both passed and failed
                say(f"seed {args.seed}: arm {arm} failed: {error}")
                record["arms"][arm] = {"failed": str(error)}
                continue
            record["arms"][arm] = [
                {
                    k: r[k]
                    for k in (
                        "round",
                        "seconds",
                        "training",
                        "train_solved",
                        "pseudo_labelled",
                        "pseudo_label_audit",
                        "stopped",
                    )
                    if k in r
                }
                for r in rounds
            ]
        labelled = record["arms"].get("labelled")
        if isinstance(labelled, list) and all("stopped" not in r for r in labelled):
            record["placebo"] = run_placebo(args, seed_dir, train, eval_sets, executor)
    finally:
        executor.close()
    record["figures"] = seed_figures(args, seed_dir, arms, eval_sets)
    done.write_text(json.dumps(record, indent=2) + "\n")
    return record


def spread(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Each difference's value per seed (pass@1 and repair rate), with mean, min and max."""
    result: dict[str, Any] = {}
    evaluated = [r for r in records if "eval" in r["figures"]]
    for eval_set in evaluated[0]["figures"] if evaluated else ():
        if eval_set == "train_phases":
            continue
        keys = {k for r in evaluated for k in r["figures"][eval_set]["differences"]}
        for key in sorted(keys):
            for metric in ("pass@1", "repair_rate"):
                values = [
                    r["figures"][eval_set]["differences"][key][metric]["value"]
                    for r in evaluated
                    if key in r["figures"][eval_set]["differences"]
                ]
                result.setdefault(eval_set, {}).setdefault(key, {})[metric] = {
                    "per_seed": [round(v, 4) for v in values],
                    "mean": round(statistics.fmean(values), 4),
                    "min": round(min(values), 4),
                    "max": round(max(values), 4),
                }
    return result


def interval(entry: dict[str, Any], sign: str = "+") -> str:
    return f"{entry['value']:{sign}.3f} [{entry['low']:{sign}.3f}, {entry['high']:{sign}.3f}]"


def markdown(figures: dict[str, Any]) -> str:
    """The tables docs/results.md shows: per eval set and seed, every model's pass@1 and repair
    rate with clustered intervals and failure kinds, every difference clustered by function
    (interval, sign test over functions), and the spread of each difference over the seeds."""
    lines = []
    for record in figures["per_seed"]:
        for eval_set in ("eval", "ood"):
            result = record["figures"].get(eval_set)
            if result is None:
                continue
            lines += [
                f"Seed {record['seed']}, {eval_set}: {result['tasks']} tasks in "
                f"{result['functions']} functions, {result['samples']} samples each; split by "
                f"{record['split']['by']}, {record['split']['twins_removed']} eval twins of train "
                f"functions removed; {record['train_tasks']} train tasks",
                "",
                "| model | pass@1 [95% CI, clustered] | repair rate | cut off | no code | "
                "unchanged | does not compile | wrong | pass | rollouts/min |",
                "|---|---|---|---|---|---|---|---|---|---|",
            ]
            for name, model in result["models"].items():
                kinds = model["kinds"]
                lines.append(
                    f"| {name} | {interval(model['pass@1']['clustered'], '')} | "
                    f"{interval(model['repair_rate']['clustered'], '')} | "
                    + " | ".join(
                        str(kinds[k])
                        for k in (
                            "cut off",
                            "no code",
                            "unchanged",
                            "does not compile",
                            "wrong",
                            "pass",
                        )
                    )
                    + f" | {model['phase']['rollouts_per_minute']} |"
                )
            lines += [
                "",
                "| difference | Δ pass@1 (by function) | p (functions) | Δ repair rate | p |",
                "|---|---|---|---|---|",
            ]
            for key, difference in result["differences"].items():
                p1, rr = difference["pass@1"]["clustered"], difference["repair_rate"]["clustered"]
                lines.append(
                    f"| {key} | {interval(p1)} | {p1['p_value']:.3g} ({p1['gained']}+/{p1['lost']}-) | "
                    f"{interval(rr)} | {rr['p_value']:.3g} ({rr['gained']}+/{rr['lost']}-) |"
                )
            lines.append("")
    for eval_set, keys in figures["spread"].items():
        lines += [
            f"Spread over seeds {figures['seeds']}, {eval_set}:",
            "",
            "| difference | Δ pass@1 per seed (mean) | Δ repair rate per seed (mean) |",
            "|---|---|---|",
        ]
        for key, metrics in keys.items():
            lines.append(
                f"| {key} | {', '.join(f'{v:+.3f}' for v in metrics['pass@1']['per_seed'])} "
                f"({metrics['pass@1']['mean']:+.3f}) | "
                f"{', '.join(f'{v:+.3f}' for v in metrics['repair_rate']['per_seed'])} "
                f"({metrics['repair_rate']['mean']:+.3f}) |"
            )
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    preset = parser.add_mutually_exclusive_group(required=True)
    preset.add_argument(
        "--small",
        action="store_true",
        help="SmolLM2 on operator bugs (about 14 min a seed on 2 cores).",
    )
    preset.add_argument(
        "--full",
        action="store_true",
        help="Qwen2.5-Coder-0.5B on synth bugs, QuixBugs OOD (hours per seed).",
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="Run folder, outside the work tree (resumed when it holds this run).",
    )
    parser.add_argument("--base", help="Base model spec (weights LoRA trains on).")
    parser.add_argument("--engine", choices=["hf", "vllm"], help="What generates.")
    parser.add_argument(
        "--arms", help=f"Comma-separated: {', '.join(ARMS)} (the placebo comes with labelled)."
    )
    parser.add_argument("--seeds", help="Comma-separated seeds of the whole procedure.")
    parser.add_argument("--rounds", type=int, help="Rounds per arm.")
    parser.add_argument("--train-limit", type=int, help="Train tasks at most (a seeded draw).")
    parser.add_argument("--eval-limit", type=int, help="Eval tasks at most (a seeded draw).")
    parser.add_argument(
        "--eval-fraction", type=float, help="Share of tasks whose units go to eval."
    )
    parser.add_argument("--ood", help="Out-of-distribution task file (QuixBugs format).")
    parser.add_argument("--ood-limit", type=int, help="OOD tasks at most (a seeded draw).")
    parser.add_argument("--budget", type=int, help="Samples per train task.")
    parser.add_argument("--eval-samples", type=int, help="k: samples per eval task.")
    parser.add_argument(
        "--reply-tokens", type=int, help="Longest reply in tokens (keep base cut-offs under 2%%)."
    )
    parser.add_argument("--epochs", type=float, help="Training passes over the data.")
    parser.add_argument("--sandbox", default="auto", help="auto, docker or local.")
    args = parser.parse_args()
    for key, value in PRESETS["small" if args.small else "full"].items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    if not arms or set(arms) - set(ARMS):
        parser.error(f"--arms takes {', '.join(ARMS)}")
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        parser.error(f"--seeds takes comma-separated integers, not {args.seeds!r}")
    if not 0 < args.eval_fraction < 1:
        parser.error("--eval-fraction must be between 0 and 1")
    if args.out.resolve().is_relative_to(Path(__file__).resolve().parents[1]):
        parser.error(f"--out {args.out} is inside the work tree: give a folder outside it")

    started = time.perf_counter()
    try:
        with contextlib.redirect_stdout(sys.stderr):  # the trainer logs to stdout
            tasks = (
                synth_tasks(args.out, list(SYNTH_PACKAGES))
                if args.tasks == "synth"
                else operator_tasks(args.out, args.per_function)
            )
            ood = draw(load_tasks("quixbugs", args.ood), args.ood_limit, 0) if args.ood else None
            records = []
            for seed in seeds:
                args.seed = seed
                seed_started = time.perf_counter()
                records.append(run_seed(args, tasks, ood, arms))
                say(f"seed {seed}: {time.perf_counter() - seed_started:.0f} s")
    except SelfRepairError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    figures = {
        "benchmark": "closed_loop",
        "preset": "small" if args.small else "full",
        "base": args.base,
        "engine": args.engine,
        "arms": arms,
        "rounds": args.rounds,
        "reply_tokens": args.reply_tokens,
        "budget": args.budget,
        "eval_samples": args.eval_samples,
        "seeds": [r["seed"] for r in records],
        # what the reply limit must keep under 2%: the base's replies cut at it, worst seed
        "base_cut_off_rate": {
            eval_set: max(
                r["figures"][eval_set]["models"]["base"]["cut_off_rate"]
                for r in records
                if eval_set in r["figures"]
            )
            for eval_set in ("eval", "ood")
            if any(eval_set in r["figures"] for r in records)
        },
        "per_seed": records,
        "spread": spread(records),
        "seconds": round(time.perf_counter() - started, 1),
    }
    (args.out / "closed_loop.json").write_text(json.dumps(figures, indent=2) + "\n")
    (args.out / "closed_loop.md").write_text(markdown(figures))
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
