"""Does training on its own repairs make a model repair unseen code better? `improve` rounds,
labelled and label-free at equal budget, measured with paired statistics.

The tasks are either generated here (benchmarks/operator_bugs.py: single-operator bugs in
small functions, train and eval split by function) or task files (`--train`, `--eval` in any
format the loaders know, e.g. `selfrepair synth`'s functions.train.jsonl / functions.eval.jsonl
with `--format synth`; `--ood` a second eval set such as QuixBugs). Each mode runs `--rounds`
rounds into OUT/MODE (`selfrepair improve --out OUT/MODE`); the base is evaluated once, in the
first mode, and its run directory copied to the others (the same settings and seeds: the same
computation). It prints one JSON line: per mode and eval set, the base and each round (pass@1
and repair rate with 95% intervals), each round's paired difference from the base (interval,
sign-test p-value), the intervals' widths, and every phase's seconds.

    OMP_NUM_THREADS=1 python benchmarks/self_improvement.py --out /tmp/self-improvement

A killed run resumes when started again with the same arguments.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from operator_bugs import write_split  # noqa: E402
from selfrepair.sandbox.choose import open_sandbox  # noqa: E402
from selfrepair.training.evaluate import Evaluation  # noqa: E402
from selfrepair.training.improve import ImproveSettings, improve  # noqa: E402

from selfrepair.executor.local import LocalExecutor  # noqa: E402
from selfrepair.loaders import load_tasks  # noqa: E402
from selfrepair.settings import Budget, Sampling  # noqa: E402

MODES = ("labelled", "unlabeled")


def sample(tasks: list, limit: int | None, seed: int) -> list:
    """At most `limit` tasks, drawn by a hash of the seed and the id (not the file's order, which
    groups tasks by module), and fixed before any model runs."""
    if limit is None:
        return tasks
    return sorted(tasks, key=lambda t: hashlib.sha256(f"{seed}:{t.task_id}".encode()).hexdigest())[
        :limit
    ]


def short(tasks: list, max_lines: int | None) -> list:
    """The tasks whose code under repair (the entry file) has at most `max_lines` lines: a CPU
    writes a long function back slowly. Chosen by the tasks' text alone, before any model runs."""
    if max_lines is None:
        return tasks
    return [
        t for t in tasks if t.entry_file and len(t.files[t.entry_file].splitlines()) <= max_lines
    ]


def figures_of(record: dict) -> dict:
    """A round's comparison, per eval set: estimates, differences, interval widths."""
    result = {}
    for eval_set, comparison in record["comparison"].items():
        models = {
            m["name"]: {metric: m[metric] for metric in ("pass@1", "repair_rate")}
            | {"eval_seconds": m["wall_seconds"]}
            for m in comparison["models"]
        }
        differences = {
            d["name"]: {metric: d[metric] for metric in ("pass@1", "repair_rate")}
            for d in comparison["differences"]
        }
        widths = {
            d["name"]: {
                metric: round(d[metric]["high"] - d[metric]["low"], 3)
                for metric in ("pass@1", "repair_rate")
            }
            for d in comparison["differences"]
        }
        result[eval_set] = {
            "tasks": comparison["tasks"],
            "samples": comparison["samples"],
            "models": models,
            "differences": differences,
            "interval_widths": widths,
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out",
        type=Path,
        required=True,
        help="Folder for data, runs and adapters (that of a killed run resumes it).",
    )
    parser.add_argument("--base", default="smollm2", help="Base model spec.")
    parser.add_argument(
        "--modes", default="labelled,unlabeled", help="Comma-separated: labelled, unlabeled."
    )
    parser.add_argument("--rounds", type=int, default=2, help="Rounds per mode.")
    parser.add_argument(
        "--method", default="sft", choices=["sft", "dpo"], help="How to learn from the repairs."
    )
    parser.add_argument(
        "--train", type=Path, help="Train task file (default: generated operator bugs)."
    )
    parser.add_argument("--eval", type=Path, help="Eval task file (with --train).")
    parser.add_argument("--format", default="quixbugs", help="Format of --train and --eval.")
    parser.add_argument("--ood", type=Path, help="Out-of-distribution eval task file.")
    parser.add_argument("--ood-format", default="quixbugs", help="Format of --ood.")
    parser.add_argument("--train-limit", type=int, help="Train tasks at most (a seeded draw).")
    parser.add_argument("--eval-limit", type=int, help="Eval tasks at most (a seeded draw).")
    parser.add_argument(
        "--ood-limit", type=int, help="Out-of-distribution tasks at most (a seeded draw)."
    )
    parser.add_argument(
        "--max-lines",
        type=int,
        help="Train and eval tasks whose code under repair has at most N lines.",
    )
    parser.add_argument(
        "--eval-functions",
        type=int,
        default=8,
        help="Generated bugs: functions held out for evaluation.",
    )
    parser.add_argument(
        "--per-function", type=int, default=2, help="Generated bugs: bugs made per function."
    )
    parser.add_argument(
        "--budget",
        type=int,
        default=4,
        help="Samples per train task (best-of-n, one batched call).",
    )
    parser.add_argument("--eval-samples", type=int, default=4, help="k: samples per eval task.")
    parser.add_argument("--reply-tokens", type=int, default=64, help="Longest reply in tokens.")
    parser.add_argument("--epochs", type=float, default=2.0, help="SFT passes over the data.")
    parser.add_argument("--learning-rate", type=float, default=2e-4, help="LoRA learning rate.")
    parser.add_argument(
        "--max-length",
        type=int,
        default=1024,
        help="Longest training example in tokens (prompt and reply).",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="Sampling seed (and the seed of the task draws)."
    )
    parser.add_argument("--sandbox", default="auto", help="auto, docker or local.")
    args = parser.parse_args()
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not modes or set(modes) - set(MODES):
        parser.error(f"--modes takes {', '.join(MODES)}")

    started = time.perf_counter()
    if args.train:
        if not args.eval:
            parser.error("--train needs --eval")
        train, held_out = load_tasks(args.format, args.train), load_tasks(args.format, args.eval)
    else:
        train_file, eval_file, _, _ = write_split(
            args.out / "data", args.eval_functions, args.per_function
        )
        train, held_out = load_tasks("quixbugs", train_file), load_tasks("quixbugs", eval_file)
    train, held_out = short(train, args.max_lines), short(held_out, args.max_lines)
    train, held_out = (
        sample(train, args.train_limit, args.seed),
        sample(held_out, args.eval_limit, args.seed),
    )
    ood = (
        sample(load_tasks(args.ood_format, args.ood), args.ood_limit, args.seed)
        if args.ood
        else None
    )
    seconds_data = time.perf_counter() - started

    # The trainer logs to stdout; this script's stdout is its one JSON line.
    with contextlib.redirect_stdout(sys.stderr):
        figures = run(args, modes, train, held_out, ood, seconds_data)
    figures["seconds"]["total"] = round(time.perf_counter() - started, 1)
    print(json.dumps(figures))


def run(
    args: argparse.Namespace,
    modes: list[str],
    train: list,
    held_out: list,
    ood: list | None,
    seconds_data: float,
) -> dict:
    executor = LocalExecutor(open_sandbox(args.sandbox))
    figures: dict = {
        "benchmark": "self_improvement",
        "base": args.base,
        "method": args.method,
        "sandbox": executor.describe()["sandbox"],
        "train_tasks": len(train),
        "eval_tasks": len(held_out),
        "ood_tasks": len(ood) if ood else 0,
        "budget": args.budget,
        "eval_samples": args.eval_samples,
        "reply_tokens": args.reply_tokens,
        "seconds": {"load_data": round(seconds_data, 1)},
        "modes": {},
    }
    try:
        first: Path | None = None
        for mode in modes:
            settings = ImproveSettings(
                base=args.base,
                rounds=args.rounds,
                method=args.method,
                budget=Budget(max_candidates=args.budget),
                sampling=Sampling(
                    samples=args.budget, temperature=0.8, max_tokens=args.reply_tokens
                ),
                train_settings={
                    "num_train_epochs": args.epochs,
                    "learning_rate": args.learning_rate,
                    "max_length": args.max_length,
                    "per_device_train_batch_size": 4,
                    "gradient_checkpointing": False,
                },
                unlabeled=mode == "unlabeled",
                evaluation=Evaluation(samples=args.eval_samples),
                seed=args.seed,
            )
            out = args.out / mode
            if first is not None:
                # No round yet: makes OUT/MODE (its settings.json) so the base's runs can join it.
                improve(
                    train,
                    held_out,
                    dataclasses.replace(settings, rounds=0),
                    executor,
                    out,
                    ood_tasks=ood,
                )
                for base_dir in first.glob("*-base"):
                    if not (out / base_dir.name).exists():
                        shutil.copytree(base_dir, out / base_dir.name)
            records = improve(train, held_out, settings, executor, out, ood_tasks=ood)
            first = first or out
            compared = [
                r for r in records if "comparison" in r
            ]  # a round that stopped compared nothing
            figures["modes"][mode] = {
                "rounds": [
                    {
                        key: r[key]
                        for key in (
                            "round",
                            "seconds",
                            "training",
                            "train_solved",
                            "pseudo_labelled",
                            "pseudo_label_audit",
                            "stopped",
                        )
                        if key in r
                    }
                    for r in records
                ],
                **({"comparison": figures_of(compared[-1])} if compared else {}),
            }
    finally:
        executor.close()
    return figures


if __name__ == "__main__":
    main()
