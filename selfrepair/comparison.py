"""Paired comparison of models evaluated on the same tasks: what `improve` writes after each
round (OUT/comparison.json) and `report` draws.

Each model's evaluation is a run directory's result rows (selfrepair.metrics.result_row), one
per task, every task answered with the same number of independent samples (best-of-n, all
drawn in one call). Per task: n samples, c of them passed. Per model:

  pass@1        mean over tasks of c / n (the unbiased pass@1)
  pass@k        mean over tasks of 1 - C(n-c, k) / C(n, k) (Chen et al. 2021), k = 1..n
  repair_rate   share of tasks with a passing sample within the budget (c >= 1)

each with a percentile bootstrap interval over tasks. Against the first model (the base):
the paired difference with its paired bootstrap interval, and the exact sign test (McNemar's
on repair rate) over the tasks where the two differ. Nothing here runs a model.

The comparison file (OUT/comparison.json) holds {"eval_sets": {name: compare(...)}, "rounds":
[what each round did: its phases' seconds, its training data]}.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from selfrepair.errors import SelfRepairError
from selfrepair.stats import (
    CONFIDENCE,
    RESAMPLES,
    bootstrap_mean,
    cluster_bootstrap,
    cluster_sign_test,
    paired_bootstrap,
    paired_cluster_bootstrap,
    sign_test,
    unbiased_pass_at_k,
)

COMPARISON = "comparison.json"
METRICS = ("pass@1", "repair_rate")  # with intervals and tests; pass@k for every k is a curve


def task_scores(
    rows: Sequence[dict[str, Any]], k_values: Sequence[int]
) -> dict[str, dict[str, float]]:
    """{task id: {"pass@1", "pass@K" for each K, "repair_rate"}} from result rows. A task
    answered with fewer samples than K (its run stopped on an error) counts pass@K over
    what it has."""
    scores = {}
    for row in rows:
        n, c = row["samples"], row["passed_candidates"]
        task = {"repair_rate": 1.0 if row["solved"] else 0.0}
        for k in k_values:
            task[f"pass@{k}"] = unbiased_pass_at_k(n, c, min(k, n)) if n else 0.0
        scores[row["task_id"]] = task
    return scores


def compare(
    evaluations: Sequence[tuple[str, Sequence[dict[str, Any]]]],
    *,
    resamples: int = RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = 0,
    clusters: Mapping[str, str] | None = None,
    pairs: Sequence[tuple[str, str]] | None = None,
) -> dict[str, Any]:
    """Estimates for each (name, result rows), the first being the baseline, and each later
    one's paired difference from it (or, where given, each (name, against) of `pairs`). Every
    evaluation must hold the same tasks. With `clusters` ({task id: cluster}, e.g. the
    function a bug is in) every estimate and difference also gets its cluster bootstrap
    interval and the sign test over clusters, under "clustered"."""
    if not evaluations:
        raise SelfRepairError("nothing to compare: no evaluations")
    base_name, base_rows = evaluations[0]
    tasks = sorted(row["task_id"] for row in base_rows)
    for name, rows in evaluations:
        mine = sorted(row["task_id"] for row in rows)
        if mine != tasks:
            raise SelfRepairError(
                f"{name} was evaluated on other tasks than {base_name} ({len(mine)} against {len(tasks)}): "
                "a paired comparison needs the same tasks"
            )
    samples = max((row["samples"] for _, rows in evaluations for row in rows), default=0)
    k_values = list(range(1, samples + 1))
    scores = {name: task_scores(rows, k_values) for name, rows in evaluations}
    options = {"resamples": resamples, "confidence": confidence, "seed": seed}

    def column(name: str, metric: str) -> list[float]:
        return [scores[name][task][metric] for task in tasks]

    groups = [clusters[task] for task in tasks] if clusters is not None else None

    models = []
    for name, rows in evaluations:
        models.append(
            {
                "name": name,
                **{
                    metric: bootstrap_mean(column(name, metric), **options).to_json()
                    | (
                        {
                            "clustered": cluster_bootstrap(
                                column(name, metric), groups, **options
                            ).to_json()
                        }
                        if groups
                        else {}
                    )
                    for metric in METRICS
                },
                "pass@k": {str(k): sum(column(name, f"pass@{k}")) / len(tasks) for k in k_values},
                "errors": sum(row["outcome"] == "error" for row in rows),
                "tokens": sum(row["tokens"] for row in rows),
                "wall_seconds": round(sum(row["wall_seconds"] for row in rows), 1),
            }
        )
    names = [name for name, _ in evaluations]
    differences = []
    for name, against in pairs or [(name, base_name) for name in names[1:]]:
        if name not in names or against not in names:
            raise SelfRepairError(f"no evaluation named {name if name not in names else against}")
        entry: dict[str, Any] = {"name": name, "against": against}
        for metric in METRICS:
            before, after = column(against, metric), column(name, metric)
            entry[metric] = (
                paired_bootstrap(before, after, **options).to_json()
                | sign_test(before, after).to_json()
            )
            if groups:
                entry[metric]["clustered"] = (
                    paired_cluster_bootstrap(before, after, groups, **options).to_json()
                    | cluster_sign_test(before, after, groups).to_json()
                )
        differences.append(entry)
    return {
        "tasks": len(tasks),
        **({"clusters": len(set(groups))} if groups else {}),
        "samples": samples,
        "confidence": confidence,
        "resamples": resamples,
        "seed": seed,
        "models": models,
        "differences": differences,
    }


def read_comparison(path: Path) -> dict[str, Any]:
    """A comparison file (written by `improve`), checked for its shape."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SelfRepairError(f"{path}: no such file") from None
    except json.JSONDecodeError as error:
        raise SelfRepairError(f"{path}:{error.lineno}: not valid JSON: {error.msg}") from None
    sets = data.get("eval_sets") if isinstance(data, dict) else None
    if not isinstance(sets, dict) or not all(
        isinstance(v, dict) and "models" in v for v in sets.values()
    ):
        raise SelfRepairError(f"{path} is not a comparison (eval sets, each with its models)")
    if not isinstance(data.get("rounds"), list):
        raise SelfRepairError(f"{path} is not a comparison (no list of rounds)")
    return data


def describe_difference(difference: dict[str, Any]) -> str:
    """ "+0.050 [-0.010, +0.110], p=0.21 (12 gained, 7 lost)": the paired difference, its
    interval, the sign test."""
    return (
        f"{difference['value']:+.3f} [{difference['low']:+.3f}, {difference['high']:+.3f}], "
        f"p={difference['p_value']:.3g} ({difference['gained']} gained, {difference['lost']} lost)"
    )
