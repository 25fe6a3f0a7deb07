"""The verifier: the probability that a candidate passes its tests, read before they run.

A candidate is shown with the specification, the code it changes and what that code's tests
reported (the parent's report for a refinement, none for a first attempt: the candidate's own
report is what it predicts), and the model is asked "will it pass? yes or no". Its score is
P(pass) = p(yes) / (p(yes) + p(no)) over the next token: calibrated by training
(`selfrepair train reviewer`, a LoRA adapter on exactly this prompt and verdict token), and
servable wherever the base is, as one more adapter. A score is advice for ordering and
picking, never the verdict: the tests decide.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from selfrepair.agents.feedback import describe_report
from selfrepair.agents.models.backends import load_model
from selfrepair.agents.models.protocol import Model
from selfrepair.agents.prompts import render
from selfrepair.agents.solver import shown_code

from selfrepair.errors import SelfRepairError
from selfrepair.types import Message, Step, Trajectory

VERDICTS = ("yes", "no")  # the assistant's reply: pass, fail


class Scorer(Protocol):
    """P(pass) of a tested or untested candidate step of a trajectory."""

    spec: str

    def score(self, trajectory: Trajectory, step: Step) -> float: ...


def verify_messages(trajectory: Trajectory, step: Step) -> list[Message]:
    """The verifier's prompt for a candidate step (its candidate must be set)."""
    task = trajectory.task
    parent = next((s for s in trajectory.steps if s.index == step.parent), None)
    before_files = task.files | (parent.candidate.files if parent and parent.candidate else {})
    path, before = shown_code(task, before_files, step.candidate)
    _, code = shown_code(task, before_files | step.candidate.files, step.candidate)
    feedback = describe_report(parent.report) if parent and parent.report else ""
    prompt = render(
        "verify", spec=task.spec.strip(), path=path, before=before, code=code, feedback=feedback
    )
    return [
        Message(role="system", content=render("verify_system")),
        Message(role="user", content=prompt),
    ]


def verdict_token_ids(tokenizer: Any) -> tuple[int, int]:
    """The first token of "yes" and of "no" as the assistant's reply begins."""
    ids = tuple(tokenizer.encode(word, add_special_tokens=False)[0] for word in VERDICTS)
    if ids[0] == ids[1]:
        raise SelfRepairError("the tokenizer gives 'yes' and 'no' the same first token")
    return ids


def prompt_ids(tokenizer: Any, messages: Sequence[Message]) -> Any:
    chat = [{"role": m.role, "content": m.content} for m in messages]
    encoded = tokenizer.apply_chat_template(
        chat, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    return encoded["input_ids"]


def pass_probability(model: Any, tokenizer: Any, messages: Sequence[Message]) -> float:
    """p(yes) / (p(yes) + p(no)) for the reply's first token under a causal LM (torch)."""
    import torch

    yes, no = verdict_token_ids(tokenizer)
    with torch.inference_mode():
        # The last position only: the vocabulary projection of the others is never read.
        ids = prompt_ids(tokenizer, messages).to(model.device)
        logits = model(input_ids=ids, logits_to_keep=1).logits[0, -1]
    return float(torch.softmax(logits[[yes, no]].float(), dim=0)[0])


class VerdictScorer:
    """A Scorer over an `hf` model (a base, or a base with a trained reviewer adapter)."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.spec = model.spec

    def probability(self, messages: Sequence[Message]) -> float:
        with self.model.using() as module:
            return pass_probability(module, self.model.tokenizer, messages)

    def score(self, trajectory: Trajectory, step: Step) -> float:
        return self.probability(verify_messages(trajectory, step))


def check_verifier_spec(spec: str) -> None:
    """Refuse, before any work, a spec whose backend cannot give next-token likelihoods here."""
    prefix, colon, _ = spec.strip().partition(":")
    if not (spec.strip() == "smollm2" or (colon and prefix == "hf")):
        raise SelfRepairError(
            f"--verifier {spec!r}: scoring reads the model's next-token likelihoods in process; "
            "give smollm2 or hf:BASE[+ADAPTER_DIR]"
        )


def verifier_of(model: Model) -> VerdictScorer:
    """A scorer over a loaded model; it reads next-token likelihoods, so the model runs here."""
    from selfrepair.agents.models.hf import HFModel

    if not isinstance(model, HFModel):
        raise SelfRepairError(
            f"verifier {model.spec!r}: scoring reads the model's next-token likelihoods in "
            "process; give smollm2 or hf:BASE[+ADAPTER_DIR]"
        )
    return VerdictScorer(model)


def load_verifier(spec: str) -> VerdictScorer:
    return verifier_of(load_model(spec))
