"""How `improve` measures a model, the same way for the base and every round.

Every eval task is answered with k independent samples (best-of-n: all k from one batched
call, every one tested, no reviewer), at the evaluation temperature, each call seeded from
the run's seed and the task (selfrepair.settings.Sampling.call_seed): the base and each round draw
with the same seeds, and a rerun draws what the first run drew. From each task's n samples and
c passes come pass@1, pass@k and the repair rate within the budget of k; the comparison
(selfrepair.comparison) pairs the models task by task.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from selfrepair.comparison import COMPARISON, compare, describe_difference
from selfrepair.rundir import read_results, write_atomically
from selfrepair.settings import Budget, Sampling

STRATEGY = "best-of-n"  # independent samples: what the unbiased estimators assume
COMPARISON_MD = "comparison.md"


@dataclass(frozen=True)
class Evaluation:
    samples: int = 4  # k: samples per eval task
    temperature: float = 0.8

    def budget(self, like: Budget) -> Budget:
        """The repair budget with room for exactly k samples."""
        return dataclasses.replace(like, max_candidates=self.samples)

    def sampling(self, like: Sampling, seed: int) -> Sampling:
        """k samples from one call, seeded; no reviewer ranking the passing ones (every
        passing sample counts, whichever would have been chosen)."""
        return dataclasses.replace(
            like, samples=self.samples, temperature=self.temperature, seed=seed, review_ties=False
        )


def write_comparison(
    out: Path,
    evaluations: dict[str, list[tuple[str, Path]]],
    seed: int,
    rounds: list[dict[str, Any]],
    clusters: dict[str, dict[str, str]] | None = None,
) -> dict[str, Any]:
    """Compare, per eval set, its (name, run directory) evaluations, the first being the base;
    write OUT/comparison.json (with what each round did, `rounds`) and comparison.md; return
    the comparison of each eval set. `clusters`, per eval set {task id: the function its bug
    is in}, adds intervals and sign tests clustered by function."""
    comparison = {
        eval_set: compare(
            [(name, read_results(run_dir)) for name, run_dir in runs],
            seed=seed,
            clusters=(clusters or {}).get(eval_set),
        )
        for eval_set, runs in evaluations.items()
    }
    write_atomically(
        out / COMPARISON, json.dumps({"eval_sets": comparison, "rounds": rounds}, indent=2) + "\n"
    )
    write_atomically(out / COMPARISON_MD, comparison_markdown(comparison))
    return comparison


COLUMNS = (
    "model",
    "pass@1 [95% CI]",
    "repair rate [95% CI]",
    "Δ pass@1 vs base",
    "Δ repair rate vs base (McNemar)",
    "tokens",
    "eval s",
)


def rows(result: dict[str, Any]) -> list[list[str]]:
    """One row per model of one eval set's comparison, as text (for markdown and the CLI)."""
    differences = {d["name"]: d for d in result["differences"]}
    table = []
    for model in result["models"]:
        difference = differences.get(model["name"])
        table.append(
            [
                model["name"],
                interval_text(model["pass@1"]),
                interval_text(model["repair_rate"]),
                describe_difference(difference["pass@1"]) if difference else "",
                describe_difference(difference["repair_rate"]) if difference else "",
                f"{model['tokens']:,}",
                f"{model['wall_seconds']:.0f}",
            ]
        )
    return table


def interval_text(interval: dict[str, float]) -> str:
    return f"{interval['value']:.3f} [{interval['low']:.3f}, {interval['high']:.3f}]"


def clustered_lines(result: dict[str, Any]) -> list[str]:
    """The differences again, clustered by function: the bugs of one function share its code,
    spec and tests, so they are resampled together and counted once by the sign test."""
    if "clusters" not in result:
        return []
    lines = [
        f"Clustered by function ({result['clusters']} functions; cluster bootstrap, sign test over functions):",
        "",
    ]
    for difference in result["differences"]:
        lines.append(
            f"- {difference['name']} vs {difference['against']}: "
            f"pass@1 {describe_difference(difference['pass@1']['clustered'])}; "
            f"repair rate {describe_difference(difference['repair_rate']['clustered'])}"
        )
    return [*lines, ""]


def comparison_markdown(comparison: dict[str, Any]) -> str:
    parts = []
    for eval_set, result in comparison.items():
        parts += [
            f"### {eval_set}: {result['tasks']} tasks, {result['samples']} samples each",
            "",
            "| " + " | ".join(COLUMNS) + " |",
            "|" + "---|" * len(COLUMNS),
            *("| " + " | ".join(row) + " |" for row in rows(result)),
            "",
            f"Intervals: paired bootstrap over tasks ({result['resamples']:,} resamples, seed {result['seed']}); "
            "p: exact sign test over the tasks that changed (McNemar's on repair rate).",
            "",
            *clustered_lines(result),
        ]
    return "\n".join(parts)
