"""Repository-level repair against function-level repair, on the same synthesized bugs, and how
well the fault function is localised. Prints one JSON line.

DATA is a `selfrepair synth` folder (the bugs of held-out packages); for localisation only,
any folder with an instances.jsonl and the repos/ it names will do. The first --limit bugs
(by instance id, of --split) are taken; for each:

1. Localisation (no model): the fault function is the one the bug's patch changes, found in
   the buggy commit. Three rankings: the issue graph's (`issue_graph`:
   agents.code.localise.rank over the issue text; classes left out, which only helps it);
   localise-repair's without following crashes back (`calls`: agents.code.suspects over the
   issue, the failing tests' tracebacks and what they call, read from the base's test run in
   the sandbox) and with it (`crash`, what localise-repair uses: each crash's missing name or
   read value, back to the functions that write it); and what localise-repair uses now
   (`spectrum`: the base's tests run once more with a tracer, sandbox.spectrum, and each
   function's Ochiai score over what the failing and passing tests executed ranks first;
   `crash` where the trace gives no usable spectrum, the reason in the row). Top-1, top-3
   (localise-repair tries 3 suspects) and top-5 accuracy with intervals; crash - calls and
   spectrum - crash paired; the trace's seconds per bug against the base's own test run.
   With --against, a previous run's JSON line (another version's ranking on the same bugs):
   its localise-repair positions against this run's, paired per bug, per package and pooled.
2. Repair, with --model, through `selfrepair bench` itself, so the figures are what a user
   gets: function-level (`bench synth`, best-of-n at --budget), repository-level with
   localise-repair (`bench swebench --strategy localise-repair` at --repo-budget: each of its
   suspects gets an equal share) and, in --arms, the issue graph (`bench swebench`, on the
   first --issue-limit bugs where given: it is slow). Per arm:
   repair rate with a bootstrap interval, tokens and seconds per task; localise-repair against
   function-level as a paired difference with its interval and the sign test.

    nice -n 10 python benchmarks/repo_repair.py tasks --limit 8 --model vllm:... --out runs/repo-repair
    python benchmarks/repo_repair.py tasks --limit 200 --against main.json   # no --model
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

from selfrepair.agents.code import localise
from selfrepair.agents.code.repo import checkout, open_repository
from selfrepair.agents.code.suspects import suspects
from selfrepair.graphs.issue import prepare, run_candidate_tests
from selfrepair.sandbox.choose import open_sandbox
from selfrepair.sandbox.judging import workspace_tests
from selfrepair.sandbox.spectrum import trace_tests

from selfrepair.cli.bench import find_mirror
from selfrepair.loaders import load_tasks
from selfrepair.stats import bootstrap_mean, paired_bootstrap, sign_test
from selfrepair.types import Task

SELFREPAIR = str(Path(sys.executable).parent / "selfrepair")
ARMS = ("function", "localise-repair", "issue")
RANKINGS = ("issue_graph", "calls", "crash", "spectrum")
TOPS = (1, 3, 5)
_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+\d+(?:,\d+)? @@", re.M)


def changed_lines(patch: str) -> dict[str, list[int]]:
    """The old file's line numbers each file's hunks remove or change (an insertion counts
    the line before it)."""
    found: dict[str, list[int]] = {}
    path = None
    line = 0
    for text in patch.splitlines():
        if text.startswith("--- "):
            path = text[4:].removeprefix("a/").strip()
        elif text.startswith("+++ "):
            continue
        elif (hunk := _HUNK.match(text)) is not None:
            line = int(hunk[1])
        elif path is not None and text.startswith("-"):
            found.setdefault(path, []).append(line)
            line += 1
        elif path is not None and text.startswith("+"):
            found.setdefault(path, []).append(max(line - 1, 1))
        elif path is not None and text.startswith(" "):
            line += 1
    return found


def fault_functions(root: Path, patch: str) -> set[tuple[str, str]]:
    """(path, qualname) of the innermost function or method holding each changed line."""
    faults = set()
    for path, lines in changed_lines(patch).items():
        if not (root / path).is_file():
            continue
        defs = [
            d for d in localise.definitions(path, (root / path).read_bytes()) if d.kind != "class"
        ]
        for number in lines:
            holding = [d for d in defs if d.contains(number)]
            if holding:
                innermost = min(holding, key=lambda d: d.end_line - d.start_line)
                faults.add((path, innermost.qualname))
    return faults


def position(ranked: list[tuple[str, str]], faults: set[tuple[str, str]]) -> int | None:
    """1-based rank of the first fault function, None when it is not ranked at all."""
    return next((i for i, key in enumerate(ranked, start=1) if key in faults), None)


def localisation(tasks: list[Task], sandbox_kind: str) -> dict:
    sandbox = open_sandbox(sandbox_kind)
    rows = []
    try:
        for task in tasks:
            with checkout(open_repository(task.repo), task.base_commit) as work:
                faults = fault_functions(work.path, task.metadata.get("solution", ""))
                defs = localise.repository_map(work.path)
                ranked = {
                    "issue_graph": [
                        (r.definition.path, r.definition.qualname)
                        for r in localise.rank(defs, task.spec)
                        if r.definition.kind != "class"
                    ]
                }
                started = time.perf_counter()
                baseline = run_candidate_tests(sandbox, work, task, None)
                base_seconds = time.perf_counter() - started
                try:
                    prepare(work, task, "")
                    spectrum = trace_tests(sandbox, workspace_tests(task), work.path)
                    usable = not spectrum.reason
                    for name, follow, traced in (
                        ("calls", False, False),
                        ("crash", True, False),
                        ("spectrum", True, usable),
                    ):
                        ranked[name] = [
                            (r.definition.path, r.definition.qualname)
                            for r in suspects(
                                work.path,
                                task.spec,
                                baseline.failing,
                                limit=50,
                                follow_crashes=follow,
                                executed=spectrum.executed if traced else None,
                                failed=spectrum.failing,
                            )
                        ]
                finally:
                    work.reset()
            rows.append(
                {"task_id": task.task_id, "package": Path(task.repo).name, "fault": sorted(faults)}
                | {name: position(order, faults) for name, order in ranked.items()}
                | {"trace": spectrum.summary(), "base_seconds": round(base_seconds, 2)}
            )
    finally:
        sandbox.close()
    measured = [r for r in rows if r["fault"]]
    summary = {"tasks": len(measured), "no_fault_found": len(rows) - len(measured)}
    for k in TOPS:
        hits = {
            ranking: [float(r[ranking] is not None and r[ranking] <= k) for r in measured]
            for ranking in RANKINGS
        }
        for ranking in RANKINGS:
            summary[f"{ranking}_top{k}"] = (
                bootstrap_mean(hits[ranking]).to_json() if measured else None
            )
        if measured:
            for after, before in (("crash", "calls"), ("spectrum", "crash")):
                summary[f"{after}_minus_{before}_top{k}"] = {
                    "difference": paired_bootstrap(hits[before], hits[after]).to_json(),
                    "sign_test": sign_test(hits[before], hits[after]).to_json(),
                }
    # Bugs of one package share its code and tests: the pooled intervals treat them as
    # independent, so each package's counts are shown too.
    summary["by_package"] = {}
    for row in measured:
        counts = summary["by_package"].setdefault(row["package"], {"tasks": 0})
        counts["tasks"] += 1
        for ranking in RANKINGS:
            for k in TOPS:
                hit = row[ranking] is not None and row[ranking] <= k
                counts[f"{ranking}_top{k}"] = counts.get(f"{ranking}_top{k}", 0) + hit
    traces = [r["trace"] for r in rows]
    summary["trace"] = {
        "usable": sum(not t["reason"] for t in traces),
        "reasons": sorted({t["reason"] for t in traces if t["reason"]}),
        "seconds_per_bug": round(sum(t["seconds"] for t in traces) / max(1, len(rows)), 2),
        "base_seconds_per_bug": round(sum(r["base_seconds"] for r in rows) / max(1, len(rows)), 2),
        "tests_traced_per_bug": round(sum(t["tests"] for t in traces) / max(1, len(rows)), 1),
    }
    summary["rows"] = rows
    return summary


def used(row: dict) -> int | None:
    """The fault's position in the ranking localise-repair used (a run before the spectrum
    was measured has only `crash`)."""
    return row.get("spectrum", row["crash"])


def against(rows: list[dict], previous: dict) -> dict:
    """This run's localise-repair ranking against a previous run's (its JSON line), per bug
    both measured: per k, the paired difference in top-k hits, the sign test and which bugs
    moved; per package, the hits before and after."""
    before = {r["task_id"]: used(r) for r in previous["localisation"]["rows"] if r["fault"]}
    paired = [r for r in rows if r["fault"] and r["task_id"] in before]
    result: dict = {"tasks": len(paired), "by_package": {}}
    for k in TOPS:
        old = [float(_hit(before[r["task_id"]], k)) for r in paired]
        new = [float(_hit(used(r), k)) for r in paired]
        result[f"top{k}"] = {
            "before": int(sum(old)),
            "after": int(sum(new)),
            "difference": paired_bootstrap(old, new).to_json(),
            "sign_test": sign_test(old, new).to_json(),
            "gained": [r["task_id"] for r, a, b in zip(paired, old, new, strict=True) if b > a],
            "lost": [r["task_id"] for r, a, b in zip(paired, old, new, strict=True) if b < a],
        }
    for r in paired:
        counts = result["by_package"].setdefault(r["package"], {"tasks": 0})
        counts["tasks"] += 1
        for k in TOPS:
            for side, position in (("before", before[r["task_id"]]), ("after", used(r))):
                counts[f"top{k}_{side}"] = counts.get(f"top{k}_{side}", 0) + _hit(position, k)
    result["moved"] = {
        r["task_id"]: [before[r["task_id"]], used(r)]
        for r in paired
        if before[r["task_id"]] != used(r)
    }
    return result


def _hit(position: int | None, k: int) -> bool:
    return position is not None and position <= k


def select(
    data: Path, split: str, limit: int, out: Path, *, functions_needed: bool
) -> tuple[Path, Path, list[str]]:
    """The first `limit` bugs of the split, by id, written as an instances file and a
    functions file holding the same bugs (the functions' mirror paths made absolute). Without
    `functions_needed` (localisation only) a folder with no functions file gives the
    instances alone."""
    suffix = "" if split == "all" else f".{split}"
    instances = {
        json.loads(line)["instance_id"]: line
        for line in (data / f"instances{suffix}.jsonl").read_text().splitlines()
        if line.strip()
    }
    functions = {}
    functions_path = data / f"functions{suffix}.jsonl"
    if not functions_path.is_file():
        if functions_needed:
            raise SystemExit(f"{functions_path}: no such file (repair arms need the functions)")
        functions_path = None
    for line in functions_path.read_text().splitlines() if functions_path else []:
        if line.strip():
            row = json.loads(line)
            synth = row["metadata"]["synth"]
            synth["mirror"] = str((data / synth["mirror"]).resolve())
            functions[row["task_id"]] = json.dumps(row)
    ids = sorted(set(instances) & set(functions) if functions_path else set(instances))[:limit]
    if not ids:
        raise SystemExit(
            f"{data}: no bugs in split {split!r} that are both instances and functions"
        )
    out.mkdir(parents=True, exist_ok=True)
    instances_file, functions_file = out / "instances.jsonl", out / "functions.jsonl"
    instances_file.write_text("".join(instances[i] + "\n" for i in ids))
    if functions_path:
        functions_file.write_text("".join(functions[i] + "\n" for i in ids))
    return instances_file, functions_file, ids


def bench(arm: str, args, instances: Path, functions: Path) -> dict[str, dict]:
    """One arm through `selfrepair bench`; its rows by task id."""
    run_dir = args.out / arm
    common = ["--model", args.model, "--sandbox", args.sandbox, "--out", str(run_dir), "--json"]
    common += ["--max-seconds", str(args.max_seconds)]
    if arm == "function":
        command = ["bench", "synth", "--data", str(functions), "--strategy", "best-of-n"]
        command += ["--budget", str(args.budget)]
    else:
        command = ["bench", "swebench", "--data", str(instances)]
        command += ["--repos", str((args.data / "repos").resolve())]
        if arm == "localise-repair":
            command += ["--strategy", "localise-repair", "--budget", str(args.repo_budget)]
        else:
            command += ["--budget", str(args.budget)]
            if args.issue_limit:
                command += ["--limit", str(args.issue_limit)]
    started = time.perf_counter()
    result = subprocess.run([SELFREPAIR, *command, *common], capture_output=True, text=True)
    if result.returncode not in (0, 1):
        raise SystemExit(f"{arm}: {result.stderr.strip()[-2000:]}")
    rows = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
    print(f"{arm}: {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    return {row["task_id"]: row for row in rows}


def arm_summary(rows: dict[str, dict], ids: list[str]) -> dict:
    ids = [i for i in ids if i in rows]  # an arm run on the first bugs only
    solved = [float(rows[i]["solved"]) for i in ids]
    return {
        "solved": int(sum(solved)),
        "tasks": len(ids),
        "repair_rate": bootstrap_mean(solved).to_json(),
        "tokens_per_task": sum(rows[i]["tokens"] for i in ids) / len(ids),
        "seconds_per_task": sum(rows[i]["wall_seconds"] for i in ids) / len(ids),
        "candidates_per_task": sum(rows[i]["candidates"] for i in ids) / len(ids),
        "errors": sum(rows[i]["outcome"] == "error" for i in ids),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data", type=Path, help="a `selfrepair synth` folder")
    parser.add_argument("--split", default="all", choices=["all", "train", "eval"])
    parser.add_argument("--limit", type=int, default=8)
    parser.add_argument("--model", help="a model spec; without it, localisation only")
    parser.add_argument("--budget", type=int, default=4, help="function-level: best-of-n")
    parser.add_argument(
        "--repo-budget", type=int, default=12, help="localise-repair: shared by its suspects"
    )
    parser.add_argument("--max-seconds", type=float, default=900.0, help="per task")
    parser.add_argument("--arms", default="function,localise-repair")
    parser.add_argument(
        "--issue-limit", type=int, help="the issue graph on the first N bugs only (it is slow)"
    )
    parser.add_argument("--sandbox", default="auto")
    parser.add_argument("--out", type=Path, default=Path("runs/repo-repair"))
    parser.add_argument(
        "--against",
        type=Path,
        help="a previous run's JSON line: its localise-repair ranking paired with this one's",
    )
    args = parser.parse_args()
    arms = [a for a in args.arms.split(",") if a]
    if unknown := set(arms) - set(ARMS):
        parser.error(f"unknown arms: {', '.join(sorted(unknown))} (known: {', '.join(ARMS)})")

    previous = None
    if args.against:
        try:
            previous = json.loads(args.against.read_text().strip().splitlines()[-1])
        except (OSError, IndexError, ValueError) as error:
            parser.error(f"--against {args.against}: {error}")
        if not isinstance(previous, dict) or "rows" not in previous.get("localisation", {}):
            parser.error(f"--against {args.against}: not a repo_repair JSON line")
    instances, functions, ids = select(
        args.data, args.split, args.limit, args.out, functions_needed=bool(args.model)
    )
    tasks = [
        task.model_copy(update={"repo": str(_mirror(args.data, task))})
        for task in load_tasks("swebench", instances)
    ]
    result = {
        "benchmark": "repo_repair",
        "data": str(args.data),
        "bugs": len(ids),
        "localisation": localisation(tasks, args.sandbox),
    }
    if previous is not None:
        result["against"] = against(result["localisation"]["rows"], previous)
    if args.model:
        result |= {"model": args.model, "budget": args.budget, "repo_budget": args.repo_budget}
        rows = {arm: bench(arm, args, instances, functions) for arm in arms}
        result["arms"] = {arm: arm_summary(rows[arm], ids) for arm in arms}
        if "function" in rows and "localise-repair" in rows:
            before = [float(rows["function"][i]["solved"]) for i in ids]
            after = [float(rows["localise-repair"][i]["solved"]) for i in ids]
            result["localise_repair_minus_function"] = {
                "difference": paired_bootstrap(before, after).to_json(),
                "sign_test": sign_test(before, after).to_json(),
            }
        result["per_task"] = {
            i: {arm: bool(rows[arm][i]["solved"]) for arm in arms if i in rows[arm]} for i in ids
        }
    print(json.dumps(result))


def _mirror(data: Path, task: Task) -> Path:
    return find_mirror(data / "repos", task).resolve()


if __name__ == "__main__":
    main()
