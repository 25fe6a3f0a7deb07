"""synthesize(): sources in, validated bugs out, resumably.

  1. resolve every SOURCE (fetch sdists) and run each one's baseline suite twice in the
     sandbox: all the ways input can be bad show up here, before DIR is created
  2. DIR/state/ records the configuration, each source's baseline and, function by function,
     every mutant tried and every bug found; DIR/repos/ gets a mirror per source
  3. for each function that some stable test calls (in a seeded order), mutants are tried in
     the sandbox until `per_function` bugs are found or `attempts` mutants are spent; `jobs`
     functions run at once, each in its own warm container
  4. after each source the outputs are written again from the state (output.py)

Running the same command again on the same DIR resumes: finished functions are skipped,
baselines and mirrors are reused, and no source is fetched again.
"""

from __future__ import annotations

import inspect
import json
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from selfrepair.agents.code.localise import parse
from selfrepair.factory import output, problem
from selfrepair.factory.mutations import (
    FAMILIES,
    Function,
    Mutation,
    candidates,
    dedent,
    function_text,
    functions,
    meaning,
)
from selfrepair.factory.sources import Source, install_requirements, resolve
from selfrepair.factory.validate import (
    BASELINE_TIMEOUT_S,
    Baseline,
    passing_alone,
    run_baseline,
    run_mutant,
)
from selfrepair.sandbox.choose import open_sandbox

from selfrepair.errors import SelfRepairError

STATE = "state"
CONFIG = "config.json"


@dataclass
class Settings:
    per_function: int = 2  # bugs kept per function
    attempts: int = 6  # mutants tried per function at most
    limit: int | None = None  # bugs per source at most
    families: tuple[str, ...] = FAMILIES
    model: str | None = None  # model-written rewrites and issues
    rewrites: int = 1  # model rewrites tried per function, with a model
    eval_fraction: float = 0.2
    split: str = "module"  # "module" or "package"
    eval_packages: list[str] = field(default_factory=list)
    seed: int = 0
    sandbox: str = "auto"
    jobs: int = 1
    baseline_timeout_s: float = BASELINE_TIMEOUT_S

    def identity(self) -> dict[str, Any]:
        """What decides which bugs a run finds: a resumed run must agree on all of it."""
        keep = ("per_function", "attempts", "limit", "families", "model", "rewrites", "seed")
        return {
            key: (list(value) if isinstance(value, tuple) else value)
            for key, value in asdict(self).items()
            if key in keep
        }


@dataclass
class Event:
    """Progress, for a display: `done` of `total` functions of `source` in `phase`."""

    source: str  # the SOURCE as given
    phase: str  # "fetch", "baseline", "mutate", "write"
    done: int = 0
    total: int = 0
    bugs: int = 0
    tried: int = 0


Report = Callable[[Event], None]


def synthesize(
    specs: list[str], out: Path, settings: Settings, report: Report = lambda event: None
) -> dict[str, Any]:
    """Synthesize validated bugs from `specs` into `out`; returns the manifest."""
    check_settings(settings)
    if not specs:
        raise SelfRepairError("give at least one SOURCE")
    if len(set(specs)) != len(specs):
        raise SelfRepairError("a SOURCE is given twice")
    out = out.expanduser()
    config_path = out / STATE / CONFIG
    previous = read_config(out, config_path, specs, settings)
    started = time.monotonic()

    # 1. Everything that can be wrong with the input shows up here, before DIR exists.
    sources: list[Source] = []
    for spec in specs:
        report(Event(spec, "fetch"))
        sources.append(resumed_source(out, spec, previous) if previous else resolve(spec))
    repos = [s.repo for s in sources]
    if len(set(repos)) != len(repos):
        raise SelfRepairError(
            f"two sources are the same package: {', '.join(sorted({r for r in repos if repos.count(r) > 1}))}"
        )
    model = None
    if settings.model:  # a model spec that does not load is bad input too
        from selfrepair.agents.models.backends import load_model

        model = load_model(settings.model)
    scratch = Path(tempfile.mkdtemp(prefix="selfrepair-envs-"))
    try:
        envs = environments(sources, out, scratch)
        baselines = run_baselines(sources, out, settings, envs, report)
        # 2. The run's state and the mirrors.
        (out / STATE).mkdir(parents=True, exist_ok=True)
        envs = keep_environments(envs, out)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    config = {
        "sources": specs,
        "settings": settings.identity(),
        "resolved": {
            s.spec: {
                "kind": s.kind,
                "name": s.name,
                "version": s.version,
                "origin": s.origin,
                "requirements": s.requirements,
            }
            for s in sources
        },
    }
    output.write_atomically(config_path, json.dumps(config, indent=2))
    for source in sources:
        folder = out / STATE / source.slug
        folder.mkdir(parents=True, exist_ok=True)
        if not (folder / "baseline.json").is_file():
            output.write_atomically(
                folder / "baseline.json", json.dumps(baselines[source.slug].to_json())
            )
        mirror = output.Mirror(out / "repos" / source.slug)
        if mirror.original() is None:
            mirror.commit(
                source.files, f"{source.repo}: the original snapshot ({source.origin})", "main"
            )

    # 3. Mutants, function by function; 4. outputs after each source.
    manifest: dict[str, Any] = {}
    for source in sources:
        mutate_source(
            source, baselines[source.slug], out, settings, model, envs.get(source.slug), report
        )
        report(Event(source.spec, "write"))
        manifest = write_outputs(out, sources, settings, time.monotonic() - started)
    return manifest


def run_baselines(
    sources: list[Source], out: Path, settings: Settings, envs: dict[str, Path], report: Report
) -> dict[str, Baseline]:
    """Each source's baseline: read back when the run being resumed has it, else run."""
    baselines: dict[str, Baseline] = {}
    for source in sources:
        stored = out / STATE / source.slug / "baseline.json"
        if stored.is_file():
            baselines[source.slug] = Baseline.from_json(json.loads(stored.read_text()))
            continue
        report(Event(source.spec, "baseline"))
        box = sandbox_for(settings, envs.get(source.slug))
        try:
            baselines[source.slug] = run_baseline(
                box, source.text_files(), source.spec, settings.baseline_timeout_s
            )
        finally:
            box.close()
    return baselines


def check_settings(settings: Settings) -> None:
    unknown = [f for f in settings.families if f not in FAMILIES]
    if unknown:
        raise SelfRepairError(
            f"unknown mutation families: {', '.join(unknown)}; known: {', '.join(FAMILIES)}"
        )
    if not settings.families and not settings.model:
        raise SelfRepairError("no mutation family chosen, and no --model for rewrites")
    if settings.split not in ("module", "package"):
        raise SelfRepairError(f"--split must be module or package, not {settings.split!r}")
    if not 0 <= settings.eval_fraction < 1:
        raise SelfRepairError("--eval-fraction must be at least 0 and less than 1")
    if settings.per_function < 1 or settings.attempts < 1 or settings.jobs < 1:
        raise SelfRepairError("--per-function, --attempts and --jobs must be at least 1")


def read_config(out: Path, config_path: Path, specs: list[str], settings: Settings) -> dict | None:
    """The stored configuration of a run to resume, or None for a new DIR (which must be empty)."""
    if config_path.is_file():
        previous = json.loads(config_path.read_text())
        if previous["sources"] != specs:
            raise SelfRepairError(
                f"{out} holds a synth run of other sources ({' '.join(previous['sources'])}); give another --out"
            )
        if previous["settings"] != settings.identity():
            changed = sorted(
                k
                for k in settings.identity()
                if previous["settings"].get(k) != settings.identity()[k]
            )
            raise SelfRepairError(
                f"{out} holds a synth run with other settings ({', '.join(changed)}); give another --out"
            )
        return previous
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise SelfRepairError(
            f"{out} exists and is not a synth output folder; give a new or empty --out"
        )
    return None


def resumed_source(out: Path, spec: str, previous: dict) -> Source:
    """A source of the run being resumed, read back from its mirror (nothing is fetched)."""
    meta = previous["resolved"].get(spec)
    if meta is None:
        return resolve(spec)
    source = Source(
        spec=spec,
        kind=meta["kind"],
        name=meta["name"],
        version=meta["version"],
        files={},
        origin=meta["origin"],
        requirements=meta["requirements"],
    )
    mirror_path = out / "repos" / source.slug
    original = output.Mirror(mirror_path).original() if mirror_path.exists() else None
    if original is None:
        return resolve(spec)
    source.files = output.Mirror(mirror_path).files(original)
    return source


def environments(sources: list[Source], out: Path, scratch: Path) -> dict[str, Path]:
    """Each source's installed requirements, for the sandbox to mount read-only: DIR/envs/SLUG
    when a run made it already, else a fresh install under `scratch` (moved into DIR once the
    baselines pass). The sandbox must be able to mount host folders (open_sandbox's
    python_path); until it can, a source with requirements is refused, before any install."""
    needed = [s for s in sources if s.requirements]
    if not needed:
        return {}
    if "python_path" not in inspect.signature(open_sandbox).parameters:
        first = needed[0]
        raise SelfRepairError(
            f"{first.spec} needs {', '.join(first.requirements)} to run its tests, and this sandbox cannot mount "
            "installed packages yet (it runs python3.11 with pytest only); choose a package whose tests need "
            "only the standard library and pytest"
        )
    envs = {}
    for source in needed:
        kept = out / "envs" / source.slug
        if kept.is_dir():
            envs[source.slug] = kept
        else:
            envs[source.slug] = scratch / source.slug
            install_requirements(source.requirements, envs[source.slug])
    return envs


def keep_environments(envs: dict[str, Path], out: Path) -> dict[str, Path]:
    """Fresh installs move into DIR/envs (the sandbox mounts them from there from now on)."""
    kept = {}
    for slug_, folder in envs.items():
        target = out / "envs" / slug_
        if folder != target:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(folder), target)
        kept[slug_] = target
    return kept


def sandbox_for(settings: Settings, env: Path | None):
    if env is not None:
        return open_sandbox(settings.sandbox, pool_size=settings.jobs, python_path=[env])
    return open_sandbox(settings.sandbox, pool_size=settings.jobs)


# ---------------------------------------------------------------- mutating one source


def units_of(source: Source, seed: int) -> list[Function]:
    """The source's functions in a seeded order (so a --limit samples the whole package)."""
    import random

    found = [unit for path in source.code_files() for unit in functions(path, source.files[path])]
    random.Random(f"{seed}:{source.repo}").shuffle(found)
    return found


def read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break  # a line cut by a kill: what follows was never acknowledged
    return rows


def tidy_state(tried_path: Path, bugs_path: Path) -> None:
    """After a kill: keep the complete lines only, and only the bugs of functions whose row
    was written (bugs are written first, so a function without its row is tried again)."""
    tried = read_jsonl(tried_path)
    done = {(row["path"], row["function"]) for row in tried}
    bugs = [row for row in read_jsonl(bugs_path) if (row["path"], row["function"]) in done]
    for path, rows in ((tried_path, tried), (bugs_path, bugs)):
        if path.exists():
            output.write_jsonl(path, rows)


def append_jsonl(path: Path, rows: list[dict]) -> None:
    with open(path, "a", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        handle.flush()


def mutate_source(
    source: Source,
    baseline: Baseline,
    out: Path,
    settings: Settings,
    model,
    env: Path | None,
    report: Report,
) -> None:
    folder = out / STATE / source.slug
    tried_path, bugs_path = folder / "tried.jsonl", folder / "bugs.jsonl"
    tidy_state(tried_path, bugs_path)
    done = {(row["path"], row["function"]) for row in read_jsonl(tried_path)}
    bugs_found = len(read_jsonl(bugs_path))
    units = units_of(source, settings.seed)
    selected = baseline.tests_of(units)
    covered = [u for u in units if (u.path, u.qualname) in selected]
    todo = [u for u in covered if (u.path, u.qualname) not in done]
    tried_total = sum(len(row["tried"]) for row in read_jsonl(tried_path))
    event = Event(
        source.spec,
        "mutate",
        done=len(covered) - len(todo),
        total=len(covered),
        bugs=bugs_found,
        tried=tried_total,
    )
    report(event)
    if not todo or (settings.limit is not None and bugs_found >= settings.limit):
        return
    files = source.text_files()
    trees = {path: parse(source.files[path]) for path in {u.path for u in todo}}
    model_lock = threading.Lock()
    box = sandbox_for(settings, env)

    def work(unit: Function) -> tuple[dict, list[dict]]:
        return try_function(
            source,
            unit,
            selected[(unit.path, unit.qualname)],
            baseline,
            files,
            trees[unit.path],
            settings,
            box,
            model,
            model_lock,
        )

    try:
        with ThreadPoolExecutor(max_workers=settings.jobs) as pool:
            pending: set[Future] = set()
            queue = iter(todo)
            while True:
                while len(pending) < settings.jobs and (
                    settings.limit is None or event.bugs < settings.limit
                ):
                    unit = next(queue, None)
                    if unit is None:
                        break
                    pending.add(pool.submit(work, unit))
                if not pending:
                    break
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    row, bugs = future.result()
                    append_jsonl(
                        bugs_path, bugs
                    )  # bugs first: a tried row means its bugs are saved
                    append_jsonl(tried_path, [row])
                    event.done += 1
                    event.bugs += len(bugs)
                    event.tried += len(row["tried"])
                    report(event)
    finally:
        box.close()


def try_function(
    source: Source,
    unit: Function,
    selected_tests: list[str],
    baseline: Baseline,
    files: dict[str, str],
    tree,
    settings: Settings,
    box,
    model,
    model_lock: threading.Lock,
) -> tuple[dict, list[dict]]:
    """Try mutants of one function until it has `per_function` bugs or `attempts` are spent,
    against the tests that call it and pass on the original when run by themselves."""
    data = source.files[unit.path]
    mutants = (
        candidates(data, unit, settings.families, settings.seed, tree) if settings.families else []
    )
    if model is not None and settings.rewrites:
        with model_lock:
            mutants = model_rewrites(model, source, unit, settings.rewrites, mutants) + mutants
    tests = (
        passing_alone(box, files, baseline, selected_tests, f"{source.repo}:{unit.qualname}")
        if mutants
        else []
    )
    tried, bugs, failing_sets = [], [], set()
    for mutation in mutants if tests else []:
        if len(bugs) >= settings.per_function or len(tried) >= settings.attempts:
            break
        if len(failing_sets) >= 2 ** len(tests) - 1:
            break  # every set of these tests has failed already: any further bug is a duplicate
        verdict = run_mutant(
            box,
            files,
            baseline,
            tests,
            unit.path,
            mutation.apply(data).decode("utf-8"),
            f"{source.repo}:{mutation.key}",
        )
        status = verdict.status
        if status == "bug" and frozenset(verdict.fail_to_pass) in failing_sets:
            status = (
                "duplicate"  # the same tests fail in the same function: the same bug to a solver
            )
        elif status == "bug":
            failing_sets.add(frozenset(verdict.fail_to_pass))
            bug = new_bug(
                source, unit, mutation, verdict, sum(baseline.seconds.get(t, 0.0) for t in tests)
            )
            if model is not None:
                with model_lock:
                    issue = problem.written_issue(
                        model, source.repo, verdict.failures, verdict.fail_to_pass
                    )
                if issue:
                    bug.problem_statement, bug.written_issue = issue, True
            bugs.append(bug.to_json())
        tried.append(
            {
                "key": mutation.key,
                "family": mutation.family,
                "status": status,
                "seconds": round(verdict.seconds, 3),
            }
        )
    row = {
        "path": unit.path,
        "function": unit.qualname,
        "tests": len(tests),
        "candidates": len(mutants),
        "tried": tried,
    }
    if mutants and len(tests) < len(selected_tests):
        row["left_out"] = sorted(
            set(selected_tests) - set(tests)
        )  # failed when run without the rest of the suite
    return row, bugs


def model_rewrites(
    model, source: Source, unit: Function, count: int, procedural: list[Mutation]
) -> list[Mutation]:
    """The model's rewrites of the function that compile, change its meaning, and are not one
    of the procedural mutants' texts."""
    from selfrepair.factory.rewrite import rewrites

    data = source.files[unit.path]
    original = meaning(dedent(unit.text(data), unit.indent))
    seen = {function_text(data, unit, m) for m in procedural}
    kept = []
    for mutation in rewrites(model, data, unit, source.repo, count):
        text = function_text(data, unit, mutation)
        after = meaning(dedent(text, unit.indent))
        if after is not None and after != original and text not in seen:
            seen.add(text)
            kept.append(mutation)
    return kept


def new_bug(
    source: Source, unit: Function, mutation: Mutation, verdict, test_seconds: float
) -> output.Bug:
    """A validated mutant as a Bug, its problem statement made from the failing tests."""
    data = source.files[unit.path]
    buggy = function_text(data, unit, mutation)
    return output.Bug(
        instance_id=output.instance_id(source, mutation.family, buggy, unit.path, unit.qualname),
        source=source.repo,
        path=unit.path,
        function=unit.qualname,
        def_line=unit.def_line,
        indent=unit.indent,
        family=mutation.family,
        note=mutation.note,
        mutation_key=mutation.key,
        span=(mutation.start, mutation.end),
        replacement=mutation.replacement,
        original_function=unit.text(data),
        buggy_function=buggy,
        fail_to_pass=verdict.fail_to_pass,
        pass_to_pass=verdict.pass_to_pass,
        failures=verdict.failures,
        problem_statement=problem.from_tests(source.repo, verdict.failures, verdict.fail_to_pass),
        test_seconds=test_seconds,
    )


# ---------------------------------------------------------------- outputs


def write_outputs(
    out: Path, sources: list[Source], settings: Settings, wall_seconds: float
) -> dict[str, Any]:
    """instances*.jsonl, functions*.jsonl and manifest.json from the state, all of them
    rewritten (atomically, file by file) each time."""
    all_bugs: list[output.Bug] = []
    per_source: list[dict[str, Any]] = []
    families: dict[str, dict[str, int]] = {}
    made: dict[str, tuple[dict, Any]] = {}  # instance id -> (instance, function task or None)
    for source in sources:
        folder = out / STATE / source.slug
        if not (folder / "baseline.json").is_file():
            continue
        tried_rows = read_jsonl(folder / "tried.jsonl")
        rank = {(row["path"], row["function"]): i for i, row in enumerate(tried_rows)}
        order = {(u.path, u.qualname): i for i, u in enumerate(units_of(source, settings.seed))}
        bugs = [output.Bug.from_json(row) for row in read_jsonl(folder / "bugs.jsonl")]
        # In the functions' seeded order (not the order parallel workers finished them in),
        # so a --limit keeps the same bugs whatever --jobs was.
        bugs = [b for b in bugs if (b.path, b.function) in rank]
        bugs.sort(key=lambda b: (order.get((b.path, b.function), len(order)), b.instance_id))
        if settings.limit is not None:
            bugs = bugs[: settings.limit]
        kept = {b.instance_id for b in bugs}
        for row in tried_rows:
            for attempt in row["tried"]:
                counts = families.setdefault(
                    attempt["family"], {"tried": 0, "failing": 0, "bugs": 0}
                )
                counts["tried"] += 1
                # the tests saw it (a kept bug, or one failing the same tests as a kept one)
                counts["failing"] += attempt["status"] in ("bug", "duplicate")
        for bug in bugs:
            families.setdefault(bug.family, {"tried": 0, "failing": 0, "bugs": 0})["bugs"] += 1
        made.update(build(out, source, bugs))
        baseline = Baseline.from_json(json.loads((folder / "baseline.json").read_text()))
        statuses: dict[str, int] = {}
        for row in tried_rows:
            for attempt in row["tried"]:
                statuses[attempt["status"]] = statuses.get(attempt["status"], 0) + 1
        per_source.append(
            {
                "source": source.spec,
                "repo": source.repo,
                "kind": source.kind,
                "origin": source.origin,
                "mirror": f"repos/{source.slug}",
                "tests": {"stable": len(baseline.stable), "left_out": len(baseline.left_out)},
                "baseline_seconds": round(baseline.wall_seconds, 1),
                "functions": {"tried": len(tried_rows)},
                "mutants": {"tried": sum(statuses.values()), **statuses, "kept": len(kept)},
                "mutant_seconds": round(
                    sum(a.get("seconds", 0.0) for row in tried_rows for a in row["tried"]), 1
                ),
            }
        )
        all_bugs.extend(bugs)

    sides = output.split_units(
        all_bugs, settings.split, settings.eval_fraction, settings.eval_packages, settings.seed
    )
    rows: dict[str, dict[str, list]] = {
        side: {"instances": [], "functions": []} for side in output.SPLITS
    }
    packages: dict[str, dict[str, int]] = {}
    for bug in all_bugs:
        side = sides[output.unit_of(bug, settings.split)]
        instance, task = made[bug.instance_id]
        rows[side]["instances"].append(instance)
        if task is not None:
            task = task.model_copy(update={"metadata": {**task.metadata, "split": side}})
            rows[side]["functions"].append(json.loads(task.model_dump_json()))
        package = packages.setdefault(
            bug.source, {"instances": 0, "functions": 0, "train": 0, "eval": 0}
        )
        package["instances"] += 1
        package["functions"] += task is not None
        package[side] += 1
    for kind in ("instances", "functions"):
        output.write_jsonl(out / f"{kind}.jsonl", rows["train"][kind] + rows["eval"][kind])
        for side in output.SPLITS:
            output.write_jsonl(out / f"{kind}.{side}.jsonl", rows[side][kind])
    manifest = {
        "tasks": {
            "instances": len(all_bugs),
            "functions": sum(len(rows[s]["functions"]) for s in output.SPLITS),
            **{
                side: {kind: len(rows[side][kind]) for kind in ("instances", "functions")}
                for side in output.SPLITS
            },
        },
        # validated_fraction: kept bugs per mutant tried; failing_fraction: mutants the tests caught
        "families": {
            family: {
                **counts,
                "validated_fraction": round(counts["bugs"] / counts["tried"], 3)
                if counts["tried"]
                else None,
                "failing_fraction": round(counts["failing"] / counts["tried"], 3)
                if counts["tried"]
                else None,
            }
            for family, counts in sorted(families.items())
        },
        "packages": packages,
        "sources": per_source,
        "splits": {
            "by": "package" if settings.eval_packages else settings.split,
            "eval_fraction": settings.eval_fraction,
            "eval_packages": settings.eval_packages,
            "units": {
                side: sorted(u for u, s in sides.items() if s == side) for side in output.SPLITS
            },
        },
        "settings": {
            **settings.identity(),
            "split": settings.split,
            "eval_fraction": settings.eval_fraction,
        },
        "wall_seconds": round(wall_seconds, 1),
    }
    output.write_atomically(out / "manifest.json", json.dumps(manifest, indent=2) + "\n")
    return manifest


def build(out: Path, source: Source, bugs: list[output.Bug]) -> dict[str, tuple[dict, Any]]:
    """Each bug's commit and patches (made once, then kept in the state: ids are deterministic
    anyway, this only saves the git work), SWE-bench instance and function-level task."""
    folder = out / STATE / source.slug
    built_path = folder / "built.json"
    built: dict[str, dict[str, str]] = (
        json.loads(built_path.read_text()) if built_path.is_file() else {}
    )
    mirror = output.Mirror(out / "repos" / source.slug)
    original = mirror.original()
    # the package's installed requirements: the sandbox mounted them to validate its bugs
    environment = f"envs/{source.slug}" if (out / "envs" / source.slug).is_dir() else None
    made = {}
    new = False
    for bug in bugs:
        if bug.instance_id not in built:
            base = output.bug_commit(
                mirror,
                original,
                source.files[bug.path],
                bug,
                f"{source.repo} with a synthesized bug",
            )
            built[bug.instance_id] = {
                "commit": base,
                "patch": mirror.diff(base, original, [bug.path]),
                "test_patch": mirror.diff(base, original, output.hidden_tests(bug)),
            }
            new = True
        record = built[bug.instance_id]
        if "function_task" not in record:
            record["function_task"] = output.splices_back(bug, source.files[bug.path])
            new = True
        instance = output.instance(bug, record, original, source.version, environment)
        task = None
        if record["function_task"]:
            task = output.function_task(
                bug,
                f"repos/{source.slug}",
                record["commit"],
                original,
                output.task_timeout(bug),
                bug.buggy_module(source.files[bug.path]),
                environment,
            )
        made[bug.instance_id] = (instance, task)
    if new:
        output.write_atomically(built_path, json.dumps(built))
    return made
