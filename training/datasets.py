"""Training data from recorded repairs, as Hugging Face `datasets`.

SFT (rejection sampling, STaR / CYCLE style): every model call whose candidate passed the
tests becomes one chat, `messages` = the prompt exactly as it was sent plus the reply as
the assistant turn. A refinement step's prompt already holds the spec, the faulty code and
the test feedback, so it becomes "spec + faulty code + feedback -> fixed code" by itself.
Only the sandbox's verdict counts: a trajectory's outcome or a reviewer's accept is never
taken as evidence that a reply was right.

DPO (V-STaR style): for one prompt of a task (the same messages, from any of its
trajectories in any run), a reply whose candidate passed is chosen and one that failed (tests
failed, or no code in it) is rejected; TRL's conversational preference format `prompt` /
`chosen` / `rejected`. Replies to one prompt are siblings: the samples of one best-of-n call,
or the children of one node in tree search (a refinement's prompt is made from its parent:
the same parent, the same prompt).

Label-free (`labels="consensus"`, LMSI style): no verdict exists; the replies that a
self-consistency run chose as its pseudo-label (graphs.consensus, `label_steps`) stand in for
the passing ones, and its other replies with code, or with none, for the failing ones.

Reviewer (verifier): every tested candidate becomes one chat, the verifier's prompt
(agents.verifier) and the reply "yes" when the tests passed, "no" when they failed; the
training side is balanced by leaving out a seeded draw of the commoner verdict, the held-out
side keeps the verdicts as they came.

All are deduplicated and split by task: every example of a task lands on the same side,
so the held-out split measures tasks the model never trained on.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from datasets import Dataset, DatasetDict
from selfrepair.agents.verifier import VERDICTS, verify_messages
from selfrepair.graphs.consensus import label_steps

from selfrepair.errors import SelfRepairError
from selfrepair.store import TrajectoryStore
from selfrepair.types import Message, Step, Trajectory

# Pairs per prompt, at most: a prompt sampled many times would otherwise swamp the rest
# with its chosen x rejected cross product.
MAX_PAIRS_PER_PROMPT = 4

# Where "this reply was right" comes from: the tests' verdict, or a label-free run's vote.
Labels = Literal["tests", "consensus"]


@dataclass
class Sources:
    """The trajectories read and where they came from (recorded in the adapter's card)."""

    trajectories: list[Trajectory]
    run_dirs: list[str] = field(default_factory=list)
    suspicious_left_out: int = 0  # steps whose run looked like an attempt on the verdict


def read_runs(run_dirs: Sequence[Path | str], keep_suspicious: bool = False) -> Sources:
    """Every trajectory in the run directories' stores; an empty set of them is an error.
    Steps whose test run looked like an attempt on the verdict are left out (their count is
    kept), unless `keep_suspicious` (to study the hacks)."""
    if not run_dirs:
        raise SelfRepairError("no run directories given: name at least one RUN_DIR")
    trajectories: list[Trajectory] = []
    for run_dir in run_dirs:
        with TrajectoryStore(Path(run_dir), read_only=True) as store:
            trajectories += store.trajectories()
    if not trajectories:
        raise SelfRepairError(
            f"no trajectories in {', '.join(map(str, run_dirs))}: nothing to train on"
        )
    left_out = 0
    if not keep_suspicious:
        cleaned = []
        for trajectory in trajectories:
            steps = [
                s for s in trajectory.steps if not (s.report is not None and s.report.suspicious)
            ]
            left_out += len(trajectory.steps) - len(steps)
            cleaned.append(
                trajectory
                if len(steps) == len(trajectory.steps)
                else trajectory.model_copy(update={"steps": steps})
            )
        trajectories = cleaned
    return Sources(
        trajectories, [str(Path(d).resolve()) for d in run_dirs], suspicious_left_out=left_out
    )


def verified_pass(step: Step) -> bool:
    """The step's candidate ran and every test passed."""
    return step.candidate is not None and step.report is not None and step.report.passed


def verified_fail(step: Step) -> bool:
    """The step's reply is known bad: its candidate failed the tests, or it held no code."""
    if not step.completion.strip() or step.finish_reason == "time":
        # nothing was generated (e.g. the model call itself failed), or the time budget cut
        # the reply before the model had finished it: neither is the model's answer
        return False
    if step.candidate is None:
        return bool(step.error)
    return step.report is not None and not step.report.passed


def chat(messages: Iterable[Message]) -> list[dict[str, str]]:
    return [{"role": m.role, "content": m.content} for m in messages]


def prompt_key(messages: Sequence[Message]) -> str:
    return json.dumps(chat(messages), sort_keys=True)


def judged(trajectory: Trajectory, labels: Labels) -> list[tuple[Step, bool]]:
    """(step, good) for each step the labels judge: by the tests, passed or known bad; by
    consensus, chosen by the vote or one of the other samples of a task that has a label."""
    if labels == "tests":
        return [
            (step, verified_pass(step))
            for step in trajectory.steps
            if verified_pass(step) or verified_fail(step)
        ]
    chosen = {step.index for step in label_steps(trajectory)}
    if not chosen:
        return []
    return [
        (step, step.index in chosen)
        for step in trajectory.steps
        if step.kind == "sample" and step.completion.strip()
    ]


def sft_rows(trajectories: Iterable[Trajectory], labels: Labels = "tests") -> list[dict]:
    rows, seen = [], set()
    for trajectory in trajectories:
        for step, good in judged(trajectory, labels):
            if not good or not step.messages or not step.completion.strip():
                continue
            key = (prompt_key(step.messages), step.completion.strip())
            if key in seen:
                continue
            seen.add(key)
            rows.append(
                {
                    "messages": chat(step.messages)
                    + [{"role": "assistant", "content": step.completion}],
                    "task_id": trajectory.task.task_id,
                    "kind": step.kind,
                }
            )
    return rows


def dpo_rows(trajectories: Iterable[Trajectory], labels: Labels = "tests") -> list[dict]:
    # (task id, prompt key) -> (task id, step kind, messages, passing replies, failing replies),
    # replies deduplicated. The task id is part of the key so that a pair never spans two tasks.
    groups: dict[
        tuple[str, str], tuple[str, str, list[Message], dict[str, None], dict[str, None]]
    ] = {}
    for trajectory in trajectories:
        for step, good in judged(trajectory, labels):
            if not step.messages:
                continue
            key = (trajectory.task.task_id, prompt_key(step.messages))
            group = groups.setdefault(
                key, (trajectory.task.task_id, step.kind, step.messages, {}, {})
            )
            (group[3] if good else group[4]).setdefault(step.completion.strip(), None)
    rows = []
    for task_id, kind, messages, chosen, rejected in groups.values():
        # A reply that both passed and failed (a flaky test) is no preference signal.
        rejected = [r for r in rejected if r not in chosen]
        pairs = [(c, r) for c in chosen for r in rejected][:MAX_PAIRS_PER_PROMPT]
        for good, bad in pairs:
            rows.append(
                {
                    "prompt": chat(messages),
                    "chosen": [{"role": "assistant", "content": good}],
                    "rejected": [{"role": "assistant", "content": bad}],
                    "task_id": task_id,
                    "kind": kind,
                }
            )
    return rows


def split_by_task(rows: list[dict], eval_fraction: float) -> DatasetDict:
    """`train` and `test`, with each task wholly on one side. Which tasks are held out
    depends only on their ids (a hash), so the split is the same from run to run."""
    if not 0 <= eval_fraction < 1:
        raise SelfRepairError(f"eval fraction must be in [0, 1), got {eval_fraction}")
    tasks = sorted(
        {r["task_id"] for r in rows}, key=lambda t: hashlib.sha256(t.encode()).hexdigest()
    )
    # Hold out at least one task when there are two or more, so evaluation is never empty.
    held = math.ceil(eval_fraction * len(tasks)) if eval_fraction and len(tasks) > 1 else 0
    held_out = set(tasks[: min(held, len(tasks) - 1)])
    train = [r for r in rows if r["task_id"] not in held_out]
    test = [r for r in rows if r["task_id"] in held_out]
    columns = list(rows[0]) if rows else []
    return DatasetDict(
        train=Dataset.from_list(train) if train else Dataset.from_dict({c: [] for c in columns}),
        test=Dataset.from_list(test) if test else Dataset.from_dict({c: [] for c in columns}),
    )


def no_successes(sources: Sources, labels: Labels, consequence: str) -> SelfRepairError:
    what = (
        "test-verified successes"
        if labels == "tests"
        else "pseudo-labels (no task had a confident majority)"
    )
    return SelfRepairError(
        f"no {what} among {len(sources.trajectories)} trajectories "
        f"in {', '.join(sources.run_dirs) or 'the given runs'}: {consequence}"
    )


def sft_dataset(
    sources: Sources, eval_fraction: float = 0.1, labels: Labels = "tests"
) -> DatasetDict:
    """Chats that led to a passing candidate (or, by consensus, a chosen one), split by task."""
    rows = sft_rows(sources.trajectories, labels)
    if not rows:
        raise no_successes(sources, labels, "nothing to fine-tune on")
    return split_by_task(rows, eval_fraction)


def dpo_dataset(
    sources: Sources, eval_fraction: float = 0.1, labels: Labels = "tests"
) -> DatasetDict:
    """Preference pairs (passing reply chosen over a failing one to the same prompt), split by task."""
    if not any(good for t in sources.trajectories for _, good in judged(t, labels)):
        raise no_successes(sources, labels, "no reply to prefer")
    rows = dpo_rows(sources.trajectories, labels)
    if not rows:
        raise SelfRepairError(
            "no preference pairs: no prompt has both a passing and a failing reply "
            "(sample several candidates per prompt, e.g. --strategy best-of-n)"
        )
    return split_by_task(rows, eval_fraction)


def reviewer_rows(trajectories: Iterable[Trajectory]) -> list[dict]:
    """One chat per tested candidate (the verifier's prompt, then "yes" or "no" as the tests
    said), with its `label` (1 passed, 0 failed); one row per task and candidate code."""
    rows, seen = [], set()
    for trajectory in trajectories:
        for step in trajectory.executed():
            if step.candidate is None:
                continue
            messages = verify_messages(trajectory, step)
            key = (trajectory.task.task_id, prompt_key(messages))
            if key in seen:
                continue
            seen.add(key)
            passed = step.report.passed
            rows.append(
                {
                    "messages": chat(messages)
                    + [{"role": "assistant", "content": VERDICTS[0] if passed else VERDICTS[1]}],
                    "label": int(passed),
                    "task_id": trajectory.task.task_id,
                    "kind": step.kind,
                }
            )
    return rows


def balance(split: Dataset, seed: int = 0) -> Dataset:
    """Both labels equally often: a seeded draw of the commoner one, the size of the other."""
    labels = split["label"]
    by_label = {value: [i for i, x in enumerate(labels) if x == value] for value in (0, 1)}
    keep = min(len(indices) for indices in by_label.values())
    rng = random.Random(seed)
    chosen = sorted(i for indices in by_label.values() for i in rng.sample(indices, keep))
    return split.select(chosen)


def reviewer_dataset(sources: Sources, eval_fraction: float = 0.1, seed: int = 0) -> DatasetDict:
    """Verifier chats split by task, the training side class-balanced."""
    rows = reviewer_rows(sources.trajectories)
    where = ", ".join(sources.run_dirs) or "the given runs"
    passed = sum(r["label"] for r in rows)
    if not rows:
        raise SelfRepairError(f"no tested candidates in {where}: nothing to train a reviewer on")
    if passed in (0, len(rows)):
        verdict = "passed" if passed else "failed"
        raise SelfRepairError(
            f"every one of the {len(rows)} tested candidates in {where} {verdict}: "
            "a reviewer needs both passing and failing candidates"
        )
    data = split_by_task(rows, eval_fraction)
    train = data["train"]
    if len(set(train["label"])) < 2:
        raise SelfRepairError(
            f"the training tasks' candidates all {'passed' if train['label'][0] else 'failed'} "
            "(the other verdict is only on held-out tasks): give more runs, or a smaller --eval-fraction"
        )
    return DatasetDict(train=balance(train, seed), test=data["test"])
