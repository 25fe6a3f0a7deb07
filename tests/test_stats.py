"""The statistics `improve` reports, against values worked out by hand or by a second method."""

from __future__ import annotations

import math
import random
from fractions import Fraction

import numpy
import pytest

from selfrepair.comparison import compare, describe_difference
from selfrepair.errors import SelfRepairError
from selfrepair.stats import (
    SignTest,
    binomial_two_sided,
    bootstrap_mean,
    cluster_bootstrap,
    cluster_sign_test,
    paired_bootstrap,
    paired_cluster_bootstrap,
    quantile,
    sign_test,
    unbiased_pass_at_k,
)


def test_pass_at_k_matches_the_binomial_form_of_chen_et_al():
    assert unbiased_pass_at_k(10, 3, 1) == pytest.approx(0.3)
    # 1 - C(7, 5) / C(10, 5) = 1 - 21 / 252
    assert unbiased_pass_at_k(10, 3, 5) == pytest.approx(1 - 21 / 252)
    assert unbiased_pass_at_k(10, 0, 5) == 0.0
    assert unbiased_pass_at_k(10, 6, 5) == 1.0  # four failures cannot fill a draw of five
    for n in range(1, 25):
        for c in range(n + 1):
            for k in range(1, n + 1):
                exact = 1 - Fraction(math.comb(n - c, k), math.comb(n, k))
                assert unbiased_pass_at_k(n, c, k) == pytest.approx(float(exact), abs=1e-12)


def test_pass_at_k_refuses_impossible_counts():
    for n, c, k in ((4, 5, 1), (4, 1, 5), (4, 1, 0)):
        with pytest.raises(SelfRepairError, match="pass@k needs"):
            unbiased_pass_at_k(n, c, k)


def test_mcnemar_exact_p_values():
    # 1 gained, 9 lost: 2 * (C(10,0) + C(10,1)) / 2^10
    assert sign_test([1] * 9 + [0] + [1] * 5, [0] * 9 + [1] + [1] * 5) == sign_test_result(
        1, 9, 22 / 1024
    )
    assert binomial_two_sided(0, 6) == 2 / 64
    assert binomial_two_sided(1, 6) == pytest.approx(2 * (1 + 6) / 64)
    assert binomial_two_sided(5, 10) == 1.0  # an even split: capped at 1
    assert binomial_two_sided(0, 0) == 1.0  # no discordant task: nothing against "no change"
    # The textbook threshold: 0 of 5 discordant pairs the other way is p = 1/16, not significant.
    assert binomial_two_sided(5, 5) == binomial_two_sided(0, 5) == 2 / 32 > 0.05


def sign_test_result(gained, lost, p):
    from selfrepair.stats import SignTest

    return SignTest(gained, lost, pytest.approx(p))


def test_sign_test_counts_only_the_tasks_that_differ():
    result = sign_test([0.25, 0.5, 1.0, 0.0], [0.5, 0.5, 0.75, 0.0])
    assert (result.gained, result.lost, result.p_value) == (1, 1, 1.0)
    with pytest.raises(SelfRepairError, match="same tasks"):
        sign_test([1, 0], [1])


def test_quantile_is_numpys_linear_quantile():
    values = sorted(random.Random(1).random() for _ in range(37))
    for q in (0.0, 0.025, 0.5, 0.975, 1.0):
        assert quantile(values, q) == pytest.approx(float(numpy.quantile(values, q)))


def test_bootstrap_interval_of_a_constant_difference_is_that_constant():
    interval = paired_bootstrap([0, 0, 1, 0], [1, 1, 2, 1])
    assert (interval.value, interval.low, interval.high) == (1.0, 1.0, 1.0)


def test_bootstrap_interval_agrees_with_the_normal_approximation_on_many_tasks():
    # 400 fair coins: the mean's standard error is 0.025, a 95% interval about +-0.049.
    rng = random.Random(7)
    values = [float(rng.random() < 0.5) for _ in range(400)]
    interval = bootstrap_mean(values, seed=3)
    mean = sum(values) / len(values)
    half = 1.96 * math.sqrt(mean * (1 - mean) / len(values))
    assert interval.low == pytest.approx(mean - half, abs=0.006)
    assert interval.high == pytest.approx(mean + half, abs=0.006)
    assert bootstrap_mean(values, seed=3) == interval  # seeded: the same interval every time


def test_pairing_narrows_the_interval_when_tasks_differ_in_difficulty():
    # Task difficulty varies a lot; the "after" model is uniformly 0.1 better on each task.
    rng = random.Random(2)
    before = [rng.random() * 0.8 for _ in range(100)]
    after = [b + 0.1 + rng.gauss(0, 0.02) for b in before]
    paired = paired_bootstrap(before, after)
    unpaired_half = 1.96 * math.sqrt(numpy.var(before) / 100 + numpy.var(after) / 100)
    assert paired.low > 0.08 and paired.high < 0.12
    assert paired.high - paired.low < unpaired_half  # far narrower than the unpaired interval


def rows(outcomes: dict[str, tuple[int, int]]) -> list[dict]:
    return [
        {
            "task_id": task,
            "samples": n,
            "passed_candidates": c,
            "solved": c > 0,
            "outcome": "solved" if c else "budget",
            "tokens": 10,
            "wall_seconds": 1.0,
        }
        for task, (n, c) in outcomes.items()
    ]


def test_compare_pairs_tasks_by_id_and_tests_the_differences():
    base = rows({"a": (4, 0), "b": (4, 2), "c": (4, 4), "d": (4, 0)})
    better = rows({"d": (4, 1), "c": (4, 4), "b": (4, 3), "a": (4, 2)})
    result = compare([("base", base), ("round 1", better)], resamples=2000)
    base_model, round_model = result["models"]
    assert base_model["pass@1"]["value"] == pytest.approx((0 + 0.5 + 1 + 0) / 4)
    assert round_model["pass@1"]["value"] == pytest.approx((0.5 + 0.75 + 1 + 0.25) / 4)
    assert round_model["repair_rate"]["value"] == 1.0 and base_model["repair_rate"]["value"] == 0.5
    assert base_model["pass@k"]["4"] == pytest.approx(0.5)
    # pass@2 of task b: 1 - C(2, 2) / C(4, 2) = 5/6
    assert base_model["pass@k"]["2"] == pytest.approx((0 + 5 / 6 + 1 + 0) / 4)
    (difference,) = result["differences"]
    assert difference["repair_rate"]["gained"] == 2 and difference["repair_rate"]["lost"] == 0
    assert difference["repair_rate"]["p_value"] == pytest.approx(0.5)  # 2 of 2 discordant: 2 * 1/4
    assert difference["pass@1"]["gained"] == 3 and difference["pass@1"]["value"] == pytest.approx(
        (0.5 + 0.25 + 0 + 0.25) / 4
    )
    assert describe_difference(difference["repair_rate"]).startswith("+0.500 [")


def test_compare_refuses_evaluations_on_other_tasks():
    with pytest.raises(SelfRepairError, match="same tasks"):
        compare([("base", rows({"a": (2, 1)})), ("round 1", rows({"b": (2, 1)}))])


def test_a_cluster_bootstrap_of_singleton_clusters_is_the_task_bootstrap():
    values = [random.Random(n).random() for n in range(30)]
    clusters = [f"c{n:02d}" for n in range(30)]
    assert cluster_bootstrap(values, clusters, seed=3) == bootstrap_mean(values, seed=3)


def test_clusters_that_move_together_widen_the_interval_to_their_own_count():
    # 12 functions, 3 bugs each, every bug of a function scored alike: 12 pieces of evidence
    per_function = [1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0, 1.0]
    values = [v for v in per_function for _ in range(3)]
    clusters = [f"f{n}" for n in range(12) for _ in range(3)]
    clustered = cluster_bootstrap(values, clusters, seed=0)
    naive = bootstrap_mean(values, seed=0)
    by_function = bootstrap_mean(per_function, seed=0)
    assert clustered.value == naive.value == by_function.value
    assert clustered.high - clustered.low > 1.3 * (naive.high - naive.low)  # about sqrt(3)
    assert clustered.high - clustered.low == pytest.approx(
        by_function.high - by_function.low, abs=0.06
    )


def test_the_sign_test_over_functions_counts_a_function_once():
    # The case: 21 tasks gained and 2 lost are 7 functions gained and 1 lost.
    before, after, clusters = [], [], []
    for n in range(7):
        size = 3
        before += [0.0] * size
        after += [1.0] * size
        clusters += [f"gain{n}"] * size
    before += [1.0, 1.0, 0.0]
    after += [0.0, 0.0, 0.0]
    clusters += ["loss"] * 3
    assert sign_test(before, after) == SignTest(21, 2, binomial_two_sided(21, 23))
    clustered = cluster_sign_test(before, after, clusters)
    assert (clustered.gained, clustered.lost) == (7, 1)
    assert clustered.p_value == pytest.approx(2 * (1 + 8) / 2**8)  # 0.0703
    difference = paired_cluster_bootstrap(before, after, clusters, seed=0)
    assert difference.value == pytest.approx(19 / 24)
    # a function whose bugs went one up and one down, on balance nothing, is a tie
    assert cluster_sign_test([0.0, 1.0], [1.0, 0.0], ["f", "f"]) == SignTest(0, 0, 1.0)


def test_compare_clusters_and_pairs_rounds_against_each_other():
    def rows(passed: list[int]) -> list[dict]:
        return [
            {
                "task_id": f"t{n}",
                "samples": 2,
                "passed_candidates": c,
                "solved": c > 0,
                "outcome": "solved" if c else "failed",
                "tokens": 1,
                "wall_seconds": 1.0,
            }
            for n, c in enumerate(passed)
        ]

    clusters = {f"t{n}": f"f{n // 2}" for n in range(6)}
    result = compare(
        [
            ("base", rows([0, 0, 0, 0, 1, 1])),
            ("round 1", rows([2, 2, 0, 0, 1, 1])),
            ("round 2", rows([2, 2, 1, 1, 1, 1])),
        ],
        clusters=clusters,
        pairs=[("round 2", "base"), ("round 2", "round 1")],
    )
    assert result["clusters"] == 3
    assert "clustered" in result["models"][0]["pass@1"]
    late = result["differences"][1]
    assert (late["name"], late["against"]) == ("round 2", "round 1")
    assert late["pass@1"]["value"] == pytest.approx(2 / 12)
    assert (late["pass@1"]["gained"], late["pass@1"]["lost"]) == (2, 0)  # tasks
    clustered = late["pass@1"]["clustered"]
    assert (clustered["gained"], clustered["lost"]) == (1, 0)  # functions
    with pytest.raises(SelfRepairError, match="no evaluation named placebo"):
        compare([("base", rows([0])), ("round 1", rows([1]))], pairs=[("placebo", "base")])
