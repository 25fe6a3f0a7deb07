"""Statistics for comparing models on the same tasks: estimators, intervals, tests.

  unbiased_pass_at_k(n, c, k)   Chen et al. 2021: the chance that k of n samples, c of them
                                correct, hold at least one correct, 1 - C(n-c, k) / C(n, k)
  bootstrap_mean(values)        a mean over tasks with a percentile bootstrap interval
  paired_bootstrap(a, b)        mean(b - a) over the same tasks, resampling tasks (pairs
                                stay together), with its percentile interval
  auc(scores, labels)           the area under the ROC curve: P(a passing item scores above
                                a failing one), ties counting half (Mann-Whitney U / pairs)
  sign_test(a, b)               the exact two-sided sign test on the tasks where a and b
                                differ; on 0/1 outcomes it is McNemar's exact test
  cluster_bootstrap(v, c)       the mean with an interval from resampling whole clusters
  paired_cluster_bootstrap      mean(b - a), resampling clusters (e.g. the bugs of one function)
  cluster_sign_test(a, b, c)    the sign test over clusters, not tasks

Plain Python (math.comb and random): no numpy or scipy in the core. Every resampling takes
a seed, so the same figures always give the same interval.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from selfrepair.errors import SelfRepairError

RESAMPLES = 10_000
CONFIDENCE = 0.95


def unbiased_pass_at_k(n: int, c: int, k: int) -> float:
    """pass@k from n samples of which c passed (Chen et al. 2021, the unbiased estimator).
    With fewer than k failures among the n, every draw of k holds a pass: 1."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise SelfRepairError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    # The product form of 1 - C(n-c, k) / C(n, k): no huge binomials.
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def quantile(ordered: Sequence[float], q: float) -> float:
    """The q-quantile of sorted values, interpolating linearly between neighbours (numpy's
    default, "linear")."""
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass(frozen=True)
class Interval:
    """An estimate and its percentile bootstrap interval."""

    value: float
    low: float
    high: float
    confidence: float

    def to_json(self) -> dict[str, float]:
        return asdict(self)


def _bootstrap(values: Sequence[float], resamples: int, confidence: float, seed: int) -> Interval:
    if not values:
        raise SelfRepairError("a bootstrap needs at least one task")
    if not 0 < confidence < 1:
        raise SelfRepairError(f"confidence must be between 0 and 1, got {confidence}")
    rng = random.Random(seed)
    size = len(values)
    means = sorted(sum(rng.choices(values, k=size)) / size for _ in range(resamples))
    tail = (1 - confidence) / 2
    return Interval(
        sum(values) / size, quantile(means, tail), quantile(means, 1 - tail), confidence
    )


def bootstrap_mean(
    values: Sequence[float],
    *,
    resamples: int = RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> Interval:
    """The mean of per-task values, with a percentile bootstrap interval over tasks."""
    return _bootstrap(list(values), resamples, confidence, seed)


def paired_bootstrap(
    before: Sequence[float],
    after: Sequence[float],
    *,
    resamples: int = RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> Interval:
    """mean(after - before) over the same tasks (position i is one task in both), with a
    percentile bootstrap interval: tasks are resampled, each keeping its pair, so what the
    two share (a task's difficulty) cancels out of the interval's width."""
    if len(before) != len(after):
        raise SelfRepairError(
            f"paired values need the same tasks: {len(before)} against {len(after)}"
        )
    return _bootstrap(
        [b - a for a, b in zip(before, after, strict=True)], resamples, confidence, seed
    )


@dataclass(frozen=True)
class SignTest:
    """Tasks where `after` did better (gained) and worse (lost), and the exact two-sided
    p-value of that split under "no difference" (each discordant task a fair coin)."""

    gained: int
    lost: int
    p_value: float

    def to_json(self) -> dict[str, float]:
        return asdict(self)


def binomial_two_sided(successes: int, trials: int) -> float:
    """P(a split at least this uneven) for `trials` fair coins: 2 * P(X <= min), at most 1."""
    if trials == 0:
        return 1.0
    tail = sum(math.comb(trials, i) for i in range(min(successes, trials - successes) + 1))
    return min(1.0, 2 * tail / 2**trials)


def sign_test(before: Sequence[float], after: Sequence[float]) -> SignTest:
    """The exact sign test on paired values; ties carry no information and are left out.
    On 0/1 outcomes (solved or not) this is McNemar's exact test: the discordant pairs
    b (gained) and c (lost), and p = P(Binomial(b + c, 1/2) as uneven as observed)."""
    if len(before) != len(after):
        raise SelfRepairError(
            f"paired values need the same tasks: {len(before)} against {len(after)}"
        )
    gained = sum(b > a for a, b in zip(before, after, strict=True))
    lost = sum(b < a for a, b in zip(before, after, strict=True))
    return SignTest(gained, lost, binomial_two_sided(gained, gained + lost))


def _clusters(values: Sequence[float], clusters: Sequence[str]) -> list[list[float]]:
    if len(values) != len(clusters):
        raise SelfRepairError(f"{len(values)} values against {len(clusters)} cluster names")
    grouped: dict[str, list[float]] = {}
    for value, cluster in zip(values, clusters, strict=True):
        grouped.setdefault(cluster, []).append(value)
    return [grouped[name] for name in sorted(grouped)]


def cluster_bootstrap(
    values: Sequence[float],
    clusters: Sequence[str],
    *,
    resamples: int = RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> Interval:
    """The mean over tasks with a cluster bootstrap interval: whole clusters (the bugs of one
    function, which share its code, spec and tests) are resampled, not tasks, so tasks that
    succeed or fail together do not pass for independent evidence. Each resample's statistic
    is the mean over the tasks it drew (clusters may differ in size)."""
    groups = _clusters(values, clusters)
    if not groups:
        raise SelfRepairError("a bootstrap needs at least one task")
    if not 0 < confidence < 1:
        raise SelfRepairError(f"confidence must be between 0 and 1, got {confidence}")
    rng = random.Random(seed)
    sums = [(sum(g), len(g)) for g in groups]
    means = []
    for _ in range(resamples):
        drawn = rng.choices(sums, k=len(sums))
        means.append(sum(s for s, _ in drawn) / sum(n for _, n in drawn))
    means.sort()
    tail = (1 - confidence) / 2
    return Interval(
        sum(values) / len(values), quantile(means, tail), quantile(means, 1 - tail), confidence
    )


def paired_cluster_bootstrap(
    before: Sequence[float],
    after: Sequence[float],
    clusters: Sequence[str],
    *,
    resamples: int = RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> Interval:
    """mean(after - before) over the same tasks, its interval from resampling whole clusters."""
    if len(before) != len(after):
        raise SelfRepairError(
            f"paired values need the same tasks: {len(before)} against {len(after)}"
        )
    return cluster_bootstrap(
        [b - a for a, b in zip(before, after, strict=True)],
        clusters,
        resamples=resamples,
        confidence=confidence,
        seed=seed,
    )


def cluster_sign_test(
    before: Sequence[float], after: Sequence[float], clusters: Sequence[str]
) -> SignTest:
    """The exact sign test over clusters: a cluster gained when its tasks' mean difference
    is above 0, lost when below; clusters with no difference are left out. Counted this way,
    three bugs of one function that moved together are one piece of evidence, not three."""
    if len(before) != len(after):
        raise SelfRepairError(
            f"paired values need the same tasks: {len(before)} against {len(after)}"
        )
    groups = _clusters([b - a for a, b in zip(before, after, strict=True)], clusters)
    gained = sum(sum(g) > 0 for g in groups)
    lost = sum(sum(g) < 0 for g in groups)
    return SignTest(gained, lost, binomial_two_sided(gained, gained + lost))


def auc(scores: Sequence[float], labels: Sequence[int]) -> float:
    """P(score of a random positive > score of a random negative), ties counting half."""
    positives = [s for s, y in zip(scores, labels, strict=True) if y]
    negatives = [s for s, y in zip(scores, labels, strict=True) if not y]
    if not positives or not negatives:
        raise SelfRepairError("AUC needs at least one positive and one negative")
    wins = sum((p > n) + 0.5 * (p == n) for p in positives for n in negatives)
    return wins / (len(positives) * len(negatives))
