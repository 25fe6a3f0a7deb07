"""The trained reviewer (verifier) against the untrained one, on held-out tasks; one JSON line.

    benchmarks/verifier.py --runs HELD_OUT_RUN_DIR... --adapter REVIEWER_ADAPTER [--base smollm2]

The run directories hold best-of-n runs in which every candidate was tested (`selfrepair
bench ... --strategy best-of-n`, no --verifier), on tasks the adapter never trained on. Each
tested candidate (suspicious runs left out) is scored three ways on the verifier's prompt:
the trained adapter's P(yes), the untrained base's P(yes) (the same prompt, the reviewer
without training), and the solver's own likelihood of its reply (mean token log-probability
under the base). Then, per task:

- agreement: AUC and false-accept rate (score >= 0.5 on a failing candidate), trained vs
  untrained;
- ordering: sandbox runs until the first pass when candidates are tested in the verifier's
  order, against a random order (its exact expectation, (n + 1) / (c + 1) for c passing of
  n) and against best-of-n as it runs without a verifier (all n tested); paired over tasks;
- verifier@n: the share of tasks where the one candidate picked without tests passes,
  picked by the trained score, the untrained score, the solver's likelihood, or at random
  (c / n); paired differences with intervals and the sign test over functions.

Intervals come from resampling functions, not tasks: the bugs of one function share its code,
spec and tests (and, in the scripted mix, its candidates), so they are not independent
evidence; a task's candidates stay together. Score ties are broken by step order, as
best-of-n breaks them.

Scores are kept in `--cache FILE` (JSON lines, keyed by the scorer's weights and the prompt),
written after every task: a run stopped part-way goes on where it stopped, and a second
adapter of the same base is scored without scoring the base again (two of every candidate's
three forward passes).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import sys
import time
from pathlib import Path

from selfrepair.agents.models.adapters import resolve_base
from selfrepair.agents.models.backends import load_model
from selfrepair.agents.verifier import VerdictScorer, prompt_ids, verify_messages
from selfrepair.training.datasets import read_runs

from selfrepair.stats import auc, cluster_bootstrap, cluster_sign_test, paired_cluster_bootstrap

ACCEPT_AT = 0.5


def reply_likelihood(model, messages, reply: str) -> float:
    """Mean log-probability per token of `reply` after `messages` (the solver's own belief)."""
    import torch

    with model.using() as module, torch.inference_mode():
        prompt = prompt_ids(model.tokenizer, messages)
        answer = model.tokenizer(reply, add_special_tokens=False, return_tensors="pt")["input_ids"]
        ids = torch.cat([prompt, answer], dim=1).to(module.device)
        # Only the positions that predict the reply: the vocabulary projection of the
        # prompt's positions would be thrown away.
        kept = answer.shape[1] + 1
        logits = module(input_ids=ids, logits_to_keep=kept).logits[0, :-1]
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        chosen = logprobs.gather(1, ids[0, prompt.shape[1] :].unsqueeze(1))
    return float(chosen.mean()) if chosen.numel() else float("-inf")


def first_pick(scores: list[float]) -> int:
    return max(range(len(scores)), key=lambda i: (scores[i], -i))


def runs_until_pass(scores: list[float], labels: list[int]) -> int:
    """Candidates tested, best score first, until the first pass (all, with none)."""
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    return next((k + 1 for k, i in enumerate(order) if labels[i]), len(order))


def function_of(task_id: str) -> str:
    """The function a task's bug is in: `quixbugs/sum_to_n-bug1` -> `quixbugs/sum_to_n`."""
    return task_id.split("-bug")[0]


def resampled(tasks: list[dict], statistic, seed: int = 0, resamples: int = 2000) -> dict:
    """statistic(tasks) with a percentile interval from resampling whole functions."""
    import random

    groups: dict[str, list[dict]] = {}
    for task in tasks:
        groups.setdefault(function_of(task["task"]), []).append(task)
    clusters = [groups[name] for name in sorted(groups)]
    rng = random.Random(seed)
    draws = sorted(
        v
        for v in (
            statistic([t for c in rng.choices(clusters, k=len(clusters)) for t in c])
            for _ in range(resamples)
        )
        if v is not None
    )
    return {
        "value": statistic(tasks),
        "low": draws[int(0.025 * len(draws))],
        "high": draws[int(0.975 * len(draws)) - 1],
    }


def pooled_auc(tasks: list[dict], key: str) -> float | None:
    """AUC over all candidates of the tasks (None when they hold one verdict only)."""
    labels = [y for t in tasks for y in t["labels"]]
    if not 0 < sum(labels) < len(labels):
        return None
    return auc([s for t in tasks for s in t[key]], labels)


def auc_difference(tasks: list[dict], key: str, against: str) -> float | None:
    mine, theirs = pooled_auc(tasks, key), pooled_auc(tasks, against)
    return None if mine is None or theirs is None else mine - theirs


def false_accepts(tasks: list[dict], key: str) -> dict:
    failing = [s for t in tasks for s, y in zip(t[key], t["labels"], strict=True) if not y]
    accepted = sum(s >= ACCEPT_AT for s in failing)
    return {"accepted": accepted, "failing": len(failing), "rate": accepted / max(len(failing), 1)}


def mean(values: list[float], clusters: list[str]) -> dict:
    return cluster_bootstrap(values, clusters).to_json()


def compare(before: list[float], after: list[float], clusters: list[str]) -> dict:
    return {
        "before": round(sum(before) / len(before), 4),
        "after": round(sum(after) / len(after), 4),
        "difference": paired_cluster_bootstrap(before, after, clusters).to_json(),
        "sign_test_by_function": cluster_sign_test(before, after, clusters).to_json(),
    }


class ScoreCache:
    """Scores already computed, by scorer and prompt, in a JSON-lines file (or in memory)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.scores: dict[str, float] = {}
        if path is not None and path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                row = json.loads(line)
                self.scores[row["key"]] = row["score"]
        self.hits = 0
        self.computed = 0

    def get(self, scorer: str, prompt: object, compute) -> float:
        key = hashlib.sha256(json.dumps([scorer, prompt], sort_keys=True).encode()).hexdigest()
        if key in self.scores:
            self.hits += 1
            return self.scores[key]
        score = compute()
        self.computed += 1
        self.scores[key] = score
        if self.path is not None:
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps({"key": key, "score": score}) + "\n")
        return score


def weights_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, nargs="+", required=True, help="Held-out run dirs.")
    parser.add_argument("--adapter", type=Path, required=True, help="The reviewer adapter.")
    parser.add_argument("--base", default="smollm2", help="Its base model spec.")
    parser.add_argument(
        "--cache", type=Path, help="Scores file (JSON lines): resumes, and shares the base's."
    )
    args = parser.parse_args()
    if not (args.adapter / "card.json").is_file():
        parser.exit(2, f"verifier.py: {args.adapter} has no card.json (not a trained reviewer)\n")
    started = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):
        figures = measure(args)
    figures["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(figures))


def measure(args: argparse.Namespace) -> dict:
    base_path = resolve_base(args.base)
    trained = VerdictScorer(load_model(f"hf:{base_path}+{args.adapter}"))
    untrained = VerdictScorer(load_model(f"hf:{base_path}"))
    sources = read_runs(args.runs)
    held_out = json.loads((args.adapter / "card.json").read_text())
    base_id = "base:" + held_out["base_fingerprint"].get("weights_digest", base_path)
    adapter_id = "adapter:" + weights_digest(args.adapter / "adapter_model.safetensors")
    cache = ScoreCache(args.cache)
    trained_on = set()
    for run_dir in held_out["data"]["run_dirs"]:
        trained_on |= {t.task.task_id for t in read_runs([run_dir]).trajectories}
    tasks = []
    for trajectory in sources.trajectories:
        if trajectory.task.task_id in trained_on:
            continue  # held-out tasks only
        steps = [s for s in trajectory.executed() if s.candidate is not None]
        if not steps:
            continue
        prompts = [[m.model_dump() for m in verify_messages(trajectory, s)] for s in steps]
        messages = [verify_messages(trajectory, s) for s in steps]
        solver = [([m.model_dump() for m in s.messages], s.completion) for s in steps]
        started = time.perf_counter()
        tasks.append(
            {
                "task": trajectory.task.task_id,
                "labels": [int(s.report.passed) for s in steps],
                "trained": [
                    cache.get(adapter_id, p, lambda m=m: trained.probability(m))
                    for p, m in zip(prompts, messages, strict=True)
                ],
                "untrained": [
                    cache.get(base_id, p, lambda m=m: untrained.probability(m))
                    for p, m in zip(prompts, messages, strict=True)
                ],
                "likelihood": [
                    cache.get(
                        base_id + ":likelihood",
                        p,
                        lambda s=s: reply_likelihood(untrained.model, s.messages, s.completion),
                    )
                    for p, s in zip(solver, steps, strict=True)
                ],
            }
        )
        print(
            f"{trajectory.task.task_id}: {len(steps)} candidates, "
            f"{time.perf_counter() - started:.1f} s",
            file=sys.stderr,
        )
    solvable = [t for t in tasks if any(t["labels"])]
    functions = [function_of(t["task"]) for t in tasks]
    solvable_functions = [function_of(t["task"]) for t in solvable]
    n_candidates = sum(len(t["labels"]) for t in tasks)

    def picked(key: str) -> list[float]:
        return [float(t["labels"][first_pick(t[key])]) for t in tasks]

    def runs(key: str) -> list[float]:
        return [float(runs_until_pass(t[key], t["labels"])) for t in solvable]

    random_pick = [sum(t["labels"]) / len(t["labels"]) for t in tasks]
    random_runs = [(len(t["labels"]) + 1) / (sum(t["labels"]) + 1) for t in solvable]
    all_runs = [float(len(t["labels"])) for t in solvable]
    return {
        "benchmark": "verifier",
        "base": args.base,
        "adapter": str(args.adapter),
        "adapter_card": {
            "train_examples": held_out["data"]["train_examples"],
            "train_tasks": held_out["data"]["train_tasks"],
            "steps": held_out["steps"],
            "validation": held_out.get("validation"),
        },
        "held_out_tasks": len(tasks),
        "functions": len(set(functions)),
        "solvable_tasks": len(solvable),
        "candidates": n_candidates,
        "passing_candidates": sum(sum(t["labels"]) for t in tasks),
        "suspicious_left_out": sources.suspicious_left_out,
        "scores": {"computed": cache.computed, "from_cache": cache.hits},
        "auc": {
            key: resampled(tasks, lambda chosen, key=key: pooled_auc(chosen, key))
            for key in ("trained", "untrained", "likelihood")
        }
        | {
            "trained_minus_untrained": resampled(
                tasks, lambda chosen: auc_difference(chosen, "trained", "untrained")
            ),
            "trained_minus_likelihood": resampled(
                tasks, lambda chosen: auc_difference(chosen, "trained", "likelihood")
            ),
        },
        "false_accept_rate": {
            "trained": false_accepts(tasks, "trained"),
            "untrained": false_accepts(tasks, "untrained"),
        },
        "sandbox_runs_until_first_pass": {
            "tasks": len(solvable),
            "verifier_order": mean(runs("trained"), solvable_functions),
            "untrained_order": mean(runs("untrained"), solvable_functions),
            "likelihood_order": mean(runs("likelihood"), solvable_functions),
            "random_order": mean(random_runs, solvable_functions),
            "all_tested": mean(all_runs, solvable_functions),
            "verifier_vs_random": compare(random_runs, runs("trained"), solvable_functions),
            "verifier_vs_untrained": compare(
                runs("untrained"), runs("trained"), solvable_functions
            ),
        },
        "verifier_at_n": {
            "trained": mean(picked("trained"), functions),
            "untrained": mean(picked("untrained"), functions),
            "likelihood": mean(picked("likelihood"), functions),
            "random": mean(random_pick, functions),
            "trained_vs_untrained": compare(picked("untrained"), picked("trained"), functions),
            "trained_vs_likelihood": compare(picked("likelihood"), picked("trained"), functions),
            "trained_vs_random": compare(random_pick, picked("trained"), functions),
        },
    }


if __name__ == "__main__":
    main()
