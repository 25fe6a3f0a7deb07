"""Train the reviewer as a verifier: a LoRA adapter that answers "will this candidate pass?"
with "yes" or "no", learned by SFT from recorded candidates labelled by their tests
(training.datasets.reviewer_dataset: suspicious runs left out, balanced, split by task).

Its score is P(pass) from the verdict token's likelihood (agents.verifier), not a
classification head: the adapter stays a plain causal-LM LoRA, so it loads wherever the
other roles' adapters load (hf with PEFT, vLLM as a LoRA module of the one base server), and
the untrained base gives a score on the same prompt to compare with. The card records the
held-out tasks' AUC and false-accept rate for the trained adapter and for the base without it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from datasets import Dataset
from selfrepair.agents.verifier import pass_probability
from selfrepair.training.datasets import Sources, reviewer_dataset
from selfrepair.training.train import train_adapter

from selfrepair.stats import auc
from selfrepair.types import Message

ACCEPT_AT = 0.5  # a score at or above it "accepts": the false-accept rate's threshold


def agreement(scores: list[float], labels: list[int]) -> dict[str, Any]:
    """AUC (None with one label only) and the share of failing candidates scored >= ACCEPT_AT."""
    failing = [s for s, y in zip(scores, labels, strict=True) if not y]
    return {
        "auc": auc(scores, labels) if 0 < sum(labels) < len(labels) else None,
        "false_accept_rate": (
            sum(s >= ACCEPT_AT for s in failing) / len(failing) if failing else None
        ),
    }


def held_out_scores(model: Any, tokenizer: Any, split: Dataset) -> list[float]:
    return [
        pass_probability(model, tokenizer, [Message(**m) for m in row["messages"][:-1]])
        for row in split
    ]


def validation(split: Dataset):
    """`measure` for train_adapter: the held-out split scored with the adapter and without it."""

    def measure(model: Any, tokenizer: Any) -> dict[str, Any]:
        labels = list(split["label"]) if len(split) else []
        figures: dict[str, Any] = {
            "examples": len(labels),
            "tasks": len(set(split["task_id"])) if len(split) else 0,
            "passing": sum(labels),
            "accept_at": ACCEPT_AT,
        }
        if not labels:
            return figures
        trained = held_out_scores(model, tokenizer, split)
        with model.disable_adapter():
            untrained = held_out_scores(model, tokenizer, split)
        return figures | {
            "trained": agreement(trained, labels),
            "untrained": agreement(untrained, labels),
        }

    return measure


def train_reviewer(
    sources: Sources,
    base: str,
    out: Path,
    *,
    eval_fraction: float = 0.2,
    settings: dict[str, Any] | None = None,
    lora: Any = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Train the verifier adapter on `sources`; write it and its card to `out`; the card."""
    data = reviewer_dataset(sources, eval_fraction, seed)
    card = train_adapter(
        "sft",
        data,
        base,
        out,
        settings=settings,
        lora=lora,
        run_dirs=sources.run_dirs,
        suspicious_left_out=sources.suspicious_left_out,
        provenance={
            "role": "reviewer",
            "score": "P(yes) over the verdict tokens yes/no",
            "train_passing": sum(data["train"]["label"]),
            "train_failing": len(data["train"]) - sum(data["train"]["label"]),
        },
        measure=validation(data["test"]),
    )
    return card
