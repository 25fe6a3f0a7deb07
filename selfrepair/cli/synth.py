"""`selfrepair synth`: validated bugs from real Python packages (the task factory's front door).

Thin on purpose: it reads the options, shows progress, and prints what selfrepair.factory made.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from selfrepair.cli.common import JSON_HELP, QUIET_HELP, SANDBOX_HELP, SandboxKind

FAMILIES_HELP = (
    "Comma-separated mutation families (default: all): operator_swap, comparison_swap, boolean_swap, off_by_one, "
    "negate_condition, drop_condition, swap_arguments, change_constant, drop_statement, drop_return, wrong_variable."
)


class SynthDisplay:
    """One progress bar per source on stderr: functions done of those the tests reach, bugs
    kept, mutants tried; a line for fetching and for the baseline runs."""

    def __init__(self, enabled: bool) -> None:
        console = Console(stderr=True)
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[bugs]} bugs / {task.fields[tried]} mutants"),
            TimeElapsedColumn(),
            # not on a pipe: rich would draw it only once, at the end
            console=console,
            disable=not (enabled and console.is_terminal),
        )
        self.bars: dict[str, int] = {}

    def __call__(self, event) -> None:
        label = {
            "fetch": "fetching",
            "baseline": "baseline suite x2",
            "mutate": "mutating",
            "write": "writing",
        }[event.phase]
        description = f"{event.source}: {label}"
        if event.source not in self.bars:
            self.bars[event.source] = self.progress.add_task(
                description, total=None, bugs=0, tried=0
            )
        bar = self.bars[event.source]
        fields: dict = {"description": description}
        if event.phase == "mutate":
            fields.update(
                total=event.total, completed=event.done, bugs=event.bugs, tried=event.tried
            )
        self.progress.update(bar, **fields)

    def __enter__(self) -> SynthDisplay:
        self.progress.start()
        return self

    def __exit__(self, kind, *exc: object) -> None:
        if kind is not None:  # an error is said in one line: no half-drawn bars above it
            for bar in self.bars.values():
                self.progress.remove_task(bar)
            self.progress.live.transient = True
        self.progress.stop()


def synth(
    sources: list[str] = typer.Argument(
        ...,
        help="Packages to put bugs in: PyPI requirements whose sdist carries tests (toolz==1.0.0), local sdists, "
        "git repositories (their HEAD) or directories.",
        show_default=False,
    ),
    out: Path = typer.Option(
        ..., "--out", "-o", help="Output folder; running the same command again resumes it."
    ),
    jobs: int = typer.Option(
        1, "--jobs", "-j", min=1, help="Functions validated at once (one sandbox container each)."
    ),
    per_function: int = typer.Option(
        2, "--per-function", min=1, help="Bugs kept per function at most."
    ),
    attempts: int = typer.Option(
        6, "--attempts", min=1, help="Mutants tried per function at most."
    ),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Bugs kept per source at most."),
    families: str | None = typer.Option(None, "--families", help=FAMILIES_HELP),
    model: str | None = typer.Option(
        None,
        "--model",
        help="Also let this model (a model spec, e.g. smollm2 or hf:PATH) rewrite functions from their "
        "signature and docstring (SWE-smith's LM rewrite) and write each bug's issue from its failing tests.",
    ),
    rewrites: int = typer.Option(
        1, "--rewrites", min=0, help="With --model: rewrites tried per function."
    ),
    split: str = typer.Option(
        "module", "--split", help="Train/eval split unit: module or package."
    ),
    eval_fraction: float = typer.Option(
        0.2, "--eval-fraction", help="Share of the bugs held out for eval."
    ),
    eval_package: list[str] | None = typer.Option(
        None,
        "--eval-package",
        help="Hold out this package (its repo name, e.g. pypi/toolz-1.0.0) for eval; repeatable. "
        "Everything else is train.",
    ),
    seed: int = typer.Option(
        0, "--seed", help="Seed for the order of functions and mutants and for the split."
    ),
    sandbox: SandboxKind = typer.Option(SandboxKind.auto, "--sandbox", help=SANDBOX_HELP),
    quiet: bool = typer.Option(False, "--quiet", "-q", help=QUIET_HELP),
    json_output: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Synthesize validated bugs from real Python packages (SWE-smith style): mutate functions,
    keep a mutant when tests that pass on the original fail on it (FAIL_TO_PASS) and the
    others still pass (PASS_TO_PASS), all run in the sandbox.

    Writes DIR/instances.jsonl (SWE-bench instances, with DIR/repos holding the git mirrors:
    `selfrepair bench swebench --data DIR/instances.jsonl --repos DIR/repos`),
    DIR/functions.jsonl (function-level tasks: `selfrepair bench synth --data
    DIR/functions.eval.jsonl`), train/eval splits of both, and DIR/manifest.json."""
    from selfrepair.factory.mutations import FAMILIES
    from selfrepair.factory.pipeline import Settings, synthesize

    chosen = (
        tuple(f.strip() for f in families.split(",") if f.strip())
        if families is not None
        else FAMILIES
    )
    settings = Settings(
        per_function=per_function,
        attempts=attempts,
        limit=limit,
        families=chosen,
        model=model,
        rewrites=rewrites,
        eval_fraction=eval_fraction,
        split=split,
        eval_packages=list(eval_package or []),
        seed=seed,
        sandbox=sandbox.value,
        jobs=jobs,
    )
    with SynthDisplay(not (quiet or json_output)) as display:
        manifest = synthesize(list(sources), out, settings, display)
    if json_output:
        typer.echo(json.dumps({"out": str(out), "manifest": manifest}))
        return
    tasks = manifest["tasks"]
    typer.echo(
        f"{tasks['instances']} bugs ({tasks['functions']} also as function-level tasks) from "
        f"{len(manifest['sources'])} source(s) in {manifest['wall_seconds']:.0f} s: "
        f"train {tasks['train']['instances']}, eval {tasks['eval']['instances']}"
    )
    if not quiet:
        for family, counts in manifest["families"].items():
            fraction = counts["validated_fraction"]
            typer.echo(
                f"  {family:18} {counts['bugs']:4} of {counts['tried']:4} mutants"
                + (f" ({fraction:.0%})" if fraction is not None else "")
            )
        typer.echo(f"SWE-bench instances: {out / 'instances.jsonl'} (mirrors in {out / 'repos'})")
        typer.echo(
            f"function-level tasks: {out / 'functions.jsonl'}; manifest: {out / 'manifest.json'}"
        )
