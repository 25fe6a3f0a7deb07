"""The task factory's yield, and what a model makes of its tasks. Prints one JSON line.

1. `selfrepair synth` on real packages (default: toolz, more-itertools, inflection from PyPI)
   into --out: validated tasks, tasks per minute, the validated fraction per mutation family.
   A folder that already holds a finished run is resumed (nothing is redone) and the timing
   of the run that made it is reported.
2. With --model (or --gguf), single-shot and best-of-n at --budget on --functions function-level
   tasks, and single-shot and the issue loop at --budget on --instances repository-level tasks,
   all drawn from the eval split, through `selfrepair bench` itself (synth and swebench), so
   the figures are what a user gets.

    nice -n 15 python benchmarks/synth_yield.py --out runs/synth-yield --jobs 2
    nice -n 15 python benchmarks/synth_yield.py --out runs/synth-yield --model smollm2 --functions 50 --instances 20

On a CPU the model runs take hours (SmolLM2 writes about 16 tokens a second here).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

from selfrepair.factory.pipeline import Settings, synthesize

SOURCES = ["toolz==1.0.0", "more-itertools==11.2.1", "inflection==0.5.1"]
TIMING = "yield_timing.json"


def converted(gguf: Path) -> Path:
    """A plain transformers folder for a GGUF file, made once (as repair_rate.py does)."""
    from selfrepair.agents.models.smollm2 import convert_gguf

    from selfrepair.config import models_dir

    folder = models_dir() / gguf.stem
    if not (folder / "config.json").exists():
        convert_gguf(gguf, folder)
    return folder


def synthesis(args) -> dict:
    out: Path = args.out
    fresh = not (out / "state").exists()
    started = time.perf_counter()
    settings = Settings(
        jobs=args.jobs, sandbox=args.sandbox, per_function=args.per_function, attempts=args.attempts
    )

    def report(event) -> None:
        if event.phase != "mutate" or event.done % 25 == 0 or event.done == event.total:
            print(
                f"[{time.perf_counter() - started:6.0f}s] {event.source} {event.phase} {event.done}/{event.total} "
                f"bugs {event.bugs} tried {event.tried}",
                file=sys.stderr,
                flush=True,
            )

    manifest = synthesize(args.sources, out, settings, report)
    wall = time.perf_counter() - started
    timing_file = out / TIMING
    if fresh:
        timing_file.write_text(json.dumps({"wall_seconds": wall}))
    timing = (
        json.loads(timing_file.read_text()) if timing_file.is_file() else {"wall_seconds": None}
    )
    tasks = manifest["tasks"]["instances"]
    minutes = timing["wall_seconds"] / 60 if timing["wall_seconds"] else None
    return {
        "sources": args.sources,
        "settings": {
            "jobs": args.jobs,
            "per_function": args.per_function,
            "attempts": args.attempts,
            "sandbox": args.sandbox,
        },
        "tasks": tasks,
        "function_tasks": manifest["tasks"]["functions"],
        "train": manifest["tasks"]["train"],
        "eval": manifest["tasks"]["eval"],
        "wall_seconds": round(timing["wall_seconds"], 1) if timing["wall_seconds"] else None,
        "tasks_per_minute": round(tasks / minutes, 1) if minutes else None,
        "validated_fraction": {
            family: counts["validated_fraction"] for family, counts in manifest["families"].items()
        },
        "per_family": manifest["families"],
        "per_package": manifest["packages"],
        "mutants": {s["repo"]: s["mutants"] for s in manifest["sources"]},
        "baseline_seconds": {s["repo"]: s["baseline_seconds"] for s in manifest["sources"]},
    }


def sample(rows: list[str], count: int, key) -> list[str]:
    """`count` lines in a fixed order that mixes the packages (by a hash of the id)."""
    return sorted(rows, key=lambda line: hashlib.sha1(key(json.loads(line)).encode()).hexdigest())[
        :count
    ]


def bench(
    args, spec: str, kind: str, data: Path, strategy: str | None, budget: int, name: str
) -> dict:
    run_dir = args.out / "bench" / name
    command = [
        str(Path(sys.executable).parent / "selfrepair"),
        "bench",
        kind,
        "--data",
        str(data),
        "--model",
        spec,
        "--budget",
        str(budget),
        "--sandbox",
        args.repo_sandbox if kind == "swebench" else args.sandbox,
        "--out",
        str(run_dir),
        "--json",
    ]
    if strategy:
        command += ["--strategy", strategy]
    if kind == "swebench":
        command += ["--repos", str(args.out / "repos")]
    started = time.perf_counter()
    print(f"running: {' '.join(command)}", file=sys.stderr, flush=True)
    result = subprocess.run(command, stdout=subprocess.PIPE, text=True)
    if result.returncode not in (0, 1):
        raise SystemExit(f"bench failed ({result.returncode}): {' '.join(command)}")
    summary = json.loads(result.stdout.strip().splitlines()[-1])["summary"]
    return {
        "tasks": summary["tasks"],
        "solved": summary["solved"],
        "repair_rate": summary["repair_rate"],
        "tokens": summary["tokens"],
        "errors": summary["errors"],
        "run_dir": str(run_dir),
        "wall_seconds": round(time.perf_counter() - started, 1),
    }


def repair(args) -> dict:
    spec = f"hf:{converted(args.gguf)}" if args.gguf else args.model
    functions = (args.out / "functions.eval.jsonl").read_text().splitlines()
    instances = (args.out / "instances.eval.jsonl").read_text().splitlines()
    # The samples live beside the mirrors: the tasks name them relative to their own folder.
    function_data = args.out / f"functions.sample{args.functions}.jsonl"
    instance_data = args.out / f"instances.sample{args.instances}.jsonl"
    function_data.write_text(
        "".join(line + "\n" for line in sample(functions, args.functions, lambda r: r["task_id"]))
    )
    instance_data.write_text(
        "".join(
            line + "\n" for line in sample(instances, args.instances, lambda r: r["instance_id"])
        )
    )
    tag = hashlib.sha1(spec.encode()).hexdigest()[:8]
    figures = {"model": spec, "budget": args.budget}
    if args.functions:
        figures["function_level"] = {
            "single_shot": bench(
                args, spec, "synth", function_data, "refine", 1, f"functions-single-{tag}"
            ),
            "best_of_n": bench(
                args,
                spec,
                "synth",
                function_data,
                "best-of-n",
                args.budget,
                f"functions-bon{args.budget}-{tag}",
            ),
        }
    if args.instances:
        figures["repository_level"] = {
            "sandbox": args.repo_sandbox,
            "single_shot": bench(
                args, spec, "swebench", instance_data, None, 1, f"instances-single-{tag}"
            ),
            "issue_loop": bench(
                args,
                spec,
                "swebench",
                instance_data,
                None,
                args.budget,
                f"instances-b{args.budget}-{tag}",
            ),
        }
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "sources",
        nargs="*",
        default=SOURCES,
        help=f"SOURCEs for synth (default: {' '.join(SOURCES)})",
    )
    parser.add_argument(
        "--out", type=Path, required=True, help="the synth folder (resumed when it exists)"
    )
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--per-function", type=int, default=2)
    parser.add_argument("--attempts", type=int, default=6)
    parser.add_argument(
        "--sandbox",
        default="docker",
        help="where synth and the function-level runs test (default docker)",
    )
    parser.add_argument(
        "--repo-sandbox",
        default="docker",
        help="where the repository-level runs test (default docker)",
    )
    parser.add_argument("--model", help="a model spec for the repair runs, e.g. smollm2")
    parser.add_argument(
        "--gguf",
        type=Path,
        help="a GGUF model file for the repair runs, converted once, loaded with hf",
    )
    parser.add_argument(
        "--functions", type=int, default=50, help="function-level tasks for the repair runs"
    )
    parser.add_argument(
        "--instances", type=int, default=20, help="repository-level tasks for the repair runs"
    )
    parser.add_argument("--budget", type=int, default=8)
    args = parser.parse_args()
    figures = {"benchmark": "synth_yield", "synth": synthesis(args)}
    if args.model or args.gguf:
        figures["repair"] = repair(args)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
