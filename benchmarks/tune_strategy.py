"""Does `selfrepair tune` find a strategy that repairs held-out tasks better than the default?

The tasks are single-operator bugs in small functions (benchmarks/operator_bugs.py), one bug
per function, split by function into train (the improver's evidence), dev (the utility) and
eval (held out: the tuned strategy against the default, paired, at the end): no function has
bugs in two splits. It runs `selfrepair tune` on them and prints one JSON line: the trials'
dev utilities, the proposals made, accepted and refused (by kind), and the evaluation (each
strategy's repair rate with its 95% interval, the paired difference with its interval and
sign-test p-value, tokens and seconds).

    OMP_NUM_THREADS=1 python benchmarks/tune_strategy.py --out /tmp/tune-ops

A killed run resumes when started again with the same arguments.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from pathlib import Path

from operator_bugs import make_bugs

SELFREPAIR = str(Path(sys.executable).parent / "selfrepair")


def write_splits(out: Path, sizes: dict[str, int]) -> dict[str, Path]:
    """train/dev/eval.jsonl in `out`: one bug of each of sizes[split] functions, the functions
    drawn in a fixed shuffled order."""
    bugs = {name: records for name, records in make_bugs(per_function=1).items() if records}
    names = sorted(bugs)
    random.Random(0).shuffle(names)
    paths, start = {}, 0
    for split in ("eval", "dev", "train"):
        chosen = names[start : start + sizes[split]]
        start += sizes[split]
        paths[split] = out / f"{split}.jsonl"
        paths[split].write_text(
            "".join(json.dumps(bugs[name][0]) + "\n" for name in chosen), encoding="utf-8"
        )
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="Folder for the data and the run.")
    parser.add_argument("--model", default="smollm2", help="Model spec (also the improver).")
    parser.add_argument("--improver", help="Improver model spec (default: --model).")
    parser.add_argument("--trials", type=int, default=4, help="Trials on the dev tasks.")
    parser.add_argument("--budget", type=int, default=4, help="Candidates per task.")
    parser.add_argument("--max-seconds", type=float, default=120, help="Seconds per task.")
    parser.add_argument("--train", type=int, default=6, help="Train functions (0: none).")
    parser.add_argument("--dev", type=int, default=6, help="Dev functions.")
    parser.add_argument("--eval", type=int, default=12, help="Eval functions.")
    parser.add_argument("--eval-seeds", type=int, default=2, help="Seeds per eval run.")
    parser.add_argument("--utility", default="rate", help="rate, rate-per-1k-tokens, ...")
    parser.add_argument("--recursive", action="store_true", help="Tune the improver's prompt.")
    parser.add_argument("--sandbox", default="auto", help="auto, docker or local.")
    args = parser.parse_args()

    args.out.mkdir(parents=True, exist_ok=True)
    paths = write_splits(args.out, {"train": args.train, "dev": args.dev, "eval": args.eval})
    command = [
        SELFREPAIR,
        "tune",
        "--dev",
        str(paths["dev"]),
        "--eval",
        str(paths["eval"]),
        *(["--train", str(paths["train"])] if args.train else []),
        "--model",
        args.model,
        "--improver",
        args.improver or args.model,
        "--trials",
        str(args.trials),
        "--budget",
        str(args.budget),
        "--max-seconds",
        str(args.max_seconds),
        "--eval-seeds",
        str(args.eval_seeds),
        "--utility",
        args.utility,
        "--sandbox",
        args.sandbox,
        "--out",
        str(args.out / "run"),
        *(["--recursive"] if args.recursive else []),
    ]
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=sys.stderr)
    report = json.loads((args.out / "run" / "report.json").read_text(encoding="utf-8"))
    print(
        json.dumps(
            {
                "command": " ".join(command),
                "tasks": report["tasks"],
                "trials": [(t["kind"], round(t["utility"], 4)) for t in report["trials"]],
                "best_trial": report["best_trial"],
                "tuned_is_default": report["tuned_is_default"],
                "proposals": report["proposals"],
                "evaluation": report["evaluation"],
                "seconds": round(time.perf_counter() - started),
            }
        )
    )


if __name__ == "__main__":
    main()
