"""One `improve` round with SmolLM2 on CPU on single-operator bugs: does training on its own
repairs make it repair unseen functions better?

It generates the bugs (benchmarks/operator_bugs.py: a few dozen single-operator bugs in small
functions, train and eval split by function), runs one round (repair the train tasks, SFT on
what was solved, repair the eval tasks with the base and with the trained model), and prints
one JSON line: eval repair rate and pass@1 before and after, and the seconds each phase took.

    python benchmarks/self_improvement.py --out /tmp/self-improvement
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from operator_bugs import write_split  # noqa: E402

from selfrepair.graphs.budget import Budget, Sampling  # noqa: E402
from selfrepair.loaders import load_quixbugs  # noqa: E402
from selfrepair.executor.local import LocalExecutor  # noqa: E402
from selfrepair.sandbox.choose import open_sandbox  # noqa: E402
from selfrepair.training.improve import ImproveSettings, improve  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="Folder for the data, runs and adapter (that of a killed run resumes it).")
    parser.add_argument("--base", default="smollm2", help="Base model spec.")
    parser.add_argument("--method", default="sft", choices=["sft", "dpo"], help="How to learn from the repairs.")
    parser.add_argument("--eval-functions", type=int, default=8, help="Functions whose bugs are held out for evaluation.")
    parser.add_argument("--per-function", type=int, default=1, help="Bugs made per function.")
    parser.add_argument("--budget", type=int, default=4, help="Candidates per task (best-of-n, one batched call).")
    parser.add_argument("--reply-tokens", type=int, default=64, help="Longest reply in tokens (the fixes are short).")
    parser.add_argument("--epochs", type=float, default=2.0, help="SFT passes over the solved repairs.")
    parser.add_argument("--learning-rate", type=float, default=2e-4, help="LoRA learning rate.")
    parser.add_argument("--sandbox", default="auto", help="auto, docker or local.")
    args = parser.parse_args()

    started = time.perf_counter()
    train_file, eval_file, train_count, eval_count = write_split(args.out / "data", args.eval_functions, args.per_function)
    seconds_data = time.perf_counter() - started
    settings = ImproveSettings(
        base=args.base,
        rounds=1,
        method=args.method,
        strategy="best-of-n",
        budget=Budget(max_candidates=args.budget),
        sampling=Sampling(samples=args.budget, temperature=0.8, max_tokens=args.reply_tokens),
        train_settings={
            "num_train_epochs": args.epochs, "learning_rate": args.learning_rate, "max_length": 512,
            "per_device_train_batch_size": 4, "gradient_checkpointing": False,
        },  # fmt: skip
    )
    with LocalExecutor(open_sandbox(args.sandbox)) as executor:
        (record,) = improve(load_quixbugs(train_file), load_quixbugs(eval_file), settings, executor, args.out / "improve")

    figures = {
        "benchmark": "self_improvement",
        "base": args.base,
        "method": args.method,
        "sandbox": executor.describe()["sandbox"],
        "train_tasks": train_count,
        "eval_tasks": eval_count,
        "budget": args.budget,
        "reply_tokens": args.reply_tokens,
        "train_solved": record["train_solved"],
        "seconds": {"make_data": round(seconds_data, 1)} | record["seconds"],
    }
    if "stopped" in record:
        figures["stopped"] = record["stopped"]
    else:
        base_row, trained_row = record["table"]
        figures |= {
            "training": record["training"],
            "eval_repair_rate_before": base_row["repair_rate"],
            "eval_repair_rate_after": trained_row["repair_rate"],
            "eval_pass@1_before": base_row["pass@1"],
            "eval_pass@1_after": trained_row["pass@1"],
            "eval_tokens_before": base_row["tokens"],
            "eval_tokens_after": trained_row["tokens"],
        }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
