"""The trained reviewer (verifier) against the untrained one, on held-out tasks; one JSON line.

    benchmarks/verifier.py --runs HELD_OUT_RUN_DIR... --adapter REVIEWER_ADAPTER [--base smollm2]

The run directories hold best-of-n runs in which every candidate was tested (`selfrepair
bench ... --strategy best-of-n`, no --verifier), on tasks the adapter never trained on. Each
tested candidate (suspicious runs left out) is scored three ways on the verifier's prompt:
the trained adapter's P(yes), the untrained base's P(yes) (the same prompt, the reviewer
without training), and the solver's own likelihood of its reply (mean token log-probability
under the base). Then, per task:

- agreement: AUC and false-accept rate (score >= 0.5 on a failing candidate), trained vs
  untrained; intervals from resampling tasks (a task's candidates stay together);
- ordering: sandbox runs until the first pass when candidates are tested in the verifier's
  order, against a random order (its exact expectation, (n + 1) / (c + 1) for c passing of
  n) and against best-of-n as it runs without a verifier (all n tested); paired over tasks;
- verifier@n: the share of tasks where the one candidate picked without tests passes,
  picked by the trained score, the untrained score, the solver's likelihood, or at random
  (c / n); paired differences with intervals over tasks and the sign test.

Score ties are broken by step order, as best-of-n breaks them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

from selfrepair.agents.models.adapters import resolve_base
from selfrepair.agents.models.backends import load_model
from selfrepair.agents.verifier import VerdictScorer, prompt_ids, verify_messages
from selfrepair.training.datasets import read_runs

from selfrepair.stats import auc, bootstrap_mean, paired_bootstrap, sign_test

ACCEPT_AT = 0.5


def reply_likelihood(model, messages, reply: str) -> float:
    """Mean log-probability per token of `reply` after `messages` (the solver's own belief)."""
    import torch

    with model.using() as module, torch.inference_mode():
        prompt = prompt_ids(model.tokenizer, messages)
        answer = model.tokenizer(reply, add_special_tokens=False, return_tensors="pt")["input_ids"]
        ids = torch.cat([prompt, answer], dim=1).to(module.device)
        logits = module(input_ids=ids).logits[0, prompt.shape[1] - 1 : -1]
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        chosen = logprobs.gather(1, ids[0, prompt.shape[1] :].unsqueeze(1))
    return float(chosen.mean()) if chosen.numel() else float("-inf")


def first_pick(scores: list[float]) -> int:
    return max(range(len(scores)), key=lambda i: (scores[i], -i))


def runs_until_pass(scores: list[float], labels: list[int]) -> int:
    """Candidates tested, best score first, until the first pass (all, with none)."""
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    return next((k + 1 for k, i in enumerate(order) if labels[i]), len(order))


def clustered_auc(tasks: list[dict], key: str, seed: int = 0, resamples: int = 2000) -> dict:
    """AUC over all candidates, with a percentile interval from resampling tasks."""
    import random

    def pooled(chosen):
        scores = [s for t in chosen for s in t[key]]
        labels = [y for t in chosen for y in t["labels"]]
        return auc(scores, labels) if 0 < sum(labels) < len(labels) else None

    rng = random.Random(seed)
    draws = sorted(
        v
        for v in (pooled(rng.choices(tasks, k=len(tasks))) for _ in range(resamples))
        if v is not None
    )
    return {
        "value": pooled(tasks),
        "low": draws[int(0.025 * len(draws))],
        "high": draws[int(0.975 * len(draws)) - 1],
    }


def auc_difference(tasks: list[dict], seed: int = 0, resamples: int = 2000) -> dict:
    import random

    def diff(chosen):
        labels = [y for t in chosen for y in t["labels"]]
        if not 0 < sum(labels) < len(labels):
            return None
        trained = auc([s for t in chosen for s in t["trained"]], labels)
        untrained = auc([s for t in chosen for s in t["untrained"]], labels)
        return trained - untrained

    rng = random.Random(seed)
    draws = sorted(
        v
        for v in (diff(rng.choices(tasks, k=len(tasks))) for _ in range(resamples))
        if v is not None
    )
    return {
        "value": diff(tasks),
        "low": draws[int(0.025 * len(draws))],
        "high": draws[int(0.975 * len(draws)) - 1],
    }


def false_accepts(tasks: list[dict], key: str) -> dict:
    failing = [s for t in tasks for s, y in zip(t[key], t["labels"], strict=True) if not y]
    accepted = sum(s >= ACCEPT_AT for s in failing)
    return {"accepted": accepted, "failing": len(failing), "rate": accepted / max(len(failing), 1)}


def compare(before: list[float], after: list[float]) -> dict:
    return {
        "before": round(sum(before) / len(before), 4),
        "after": round(sum(after) / len(after), 4),
        "difference": paired_bootstrap(before, after).to_json(),
        "sign_test": sign_test(before, after).to_json(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, nargs="+", required=True, help="Held-out run dirs.")
    parser.add_argument("--adapter", type=Path, required=True, help="The reviewer adapter.")
    parser.add_argument("--base", default="smollm2", help="Its base model spec.")
    args = parser.parse_args()
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
        prompts = [verify_messages(trajectory, s) for s in steps]
        print(f"{trajectory.task.task_id}: {len(steps)} candidates", file=sys.stderr)
        tasks.append(
            {
                "task": trajectory.task.task_id,
                "labels": [int(s.report.passed) for s in steps],
                "trained": [trained.probability(p) for p in prompts],
                "untrained": [untrained.probability(p) for p in prompts],
                "likelihood": [
                    reply_likelihood(untrained.model, s.messages, s.completion) for s in steps
                ],
            }
        )
    solvable = [t for t in tasks if any(t["labels"])]
    n_candidates = sum(len(t["labels"]) for t in tasks)

    def picked(key: str) -> list[float]:
        return [float(t["labels"][first_pick(t[key])]) for t in tasks]

    random_pick = [sum(t["labels"]) / len(t["labels"]) for t in tasks]
    verifier_runs = [float(runs_until_pass(t["trained"], t["labels"])) for t in solvable]
    random_runs = [(len(t["labels"]) + 1) / (sum(t["labels"]) + 1) for t in solvable]
    all_runs = [float(len(t["labels"])) for t in solvable]
    untrained_runs = [float(runs_until_pass(t["untrained"], t["labels"])) for t in solvable]
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
        "solvable_tasks": len(solvable),
        "candidates": n_candidates,
        "passing_candidates": sum(sum(t["labels"]) for t in tasks),
        "suspicious_left_out": sources.suspicious_left_out,
        "auc": {
            "trained": clustered_auc(tasks, "trained"),
            "untrained": clustered_auc(tasks, "untrained"),
            "likelihood": clustered_auc(tasks, "likelihood"),
            "trained_minus_untrained": auc_difference(tasks),
        },
        "false_accept_rate": {
            "trained": false_accepts(tasks, "trained"),
            "untrained": false_accepts(tasks, "untrained"),
        },
        "sandbox_runs_until_first_pass": {
            "tasks": len(solvable),
            "verifier_order": bootstrap_mean(verifier_runs).to_json(),
            "untrained_order": bootstrap_mean(untrained_runs).to_json(),
            "random_order": bootstrap_mean(random_runs).to_json(),
            "all_tested": bootstrap_mean(all_runs).to_json(),
            "verifier_vs_random": compare(random_runs, verifier_runs),
            "verifier_vs_untrained": compare(untrained_runs, verifier_runs),
        },
        "verifier_at_n": {
            "trained": bootstrap_mean(picked("trained")).to_json(),
            "untrained": bootstrap_mean(picked("untrained")).to_json(),
            "likelihood": bootstrap_mean(picked("likelihood")).to_json(),
            "random": bootstrap_mean(random_pick).to_json(),
            "trained_vs_untrained": compare(picked("untrained"), picked("trained")),
            "trained_vs_likelihood": compare(picked("likelihood"), picked("trained")),
            "trained_vs_random": compare(random_pick, picked("trained")),
        },
    }


if __name__ == "__main__":
    main()
